/* Run a Kiln cpu artifact from C, no Python: read the weights and the inputs from raw files,
 * call kiln_precompute and kiln_run once, write the outputs to raw files (dense row-major, native byte order).
 *
 * Build (ARTIFACT is the directory `kiln compile --target cpu` wrote):
 *   cc -O2 -I ARTIFACT examples/c/run_model.c ARTIFACT/model.so -Wl,-rpath,ARTIFACT -o run_model
 * Run:
 *   ./run_model ARTIFACT/weights.bin in0.bin [in1.bin ...] out0.bin [out1.bin ...]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static void *aligned_buffer(size_t size) {
    size_t rounded = (size + 63) / 64 * 64;
    void *buffer = aligned_alloc(64, rounded ? rounded : 64);
    if (!buffer) {
        fprintf(stderr, "out of memory allocating %zu bytes\n", size);
        exit(2);
    }
    return buffer;
}

/* Exactly `expected` bytes of `path` at the start of a new buffer of `capacity` bytes. */
static void *read_file(const char *path, size_t expected, size_t capacity) {
    FILE *file = fopen(path, "rb");
    if (!file) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    void *buffer = aligned_buffer(capacity);
    size_t got = fread(buffer, 1, expected, file);
    int extra = fgetc(file) != EOF;
    fclose(file);
    if (got != expected || extra) {
        fprintf(stderr, "%s must hold exactly %zu bytes\n", path, expected);
        exit(2);
    }
    return buffer;
}

int main(int argc, char **argv) {
    if (argc != 2 + KILN_NUM_INPUTS + KILN_NUM_OUTPUTS) {
        fprintf(stderr, "usage: %s weights.bin <%d input files> <%d output files>\n", argv[0], KILN_NUM_INPUTS,
                KILN_NUM_OUTPUTS);
        return 2;
    }
    /* Room after the weights for the values kiln_precompute derives from them. */
    size_t capacity = KILN_PRECOMPUTED_BYTES ? KILN_PRECOMPUTED_OFFSET + KILN_PRECOMPUTED_BYTES : KILN_WEIGHTS_BYTES;
    void *stored = read_file(argv[1], KILN_STORED_WEIGHTS_BYTES, KILN_STORED_WEIGHTS_BYTES);
    void *weights = aligned_buffer(capacity);
    kiln_widen_weights(stored, weights); /* precision fp16: float16 weights become float32; else a copy */
    free(stored);
    if (kiln_precompute(weights) != 0) {
        fprintf(stderr, "kiln_precompute failed\n");
        return 1;
    }
    void *workspace = aligned_buffer(KILN_WORKSPACE_BYTES);
    void *inputs[KILN_NUM_INPUTS > 0 ? KILN_NUM_INPUTS : 1];
    void *outputs[KILN_NUM_OUTPUTS];
    for (int i = 0; i < KILN_NUM_INPUTS; i++) {
        size_t bytes = (size_t)KILN_INPUT_BYTES[i];
        inputs[i] = read_file(argv[2 + i], bytes, bytes);
    }
    for (int i = 0; i < KILN_NUM_OUTPUTS; i++) outputs[i] = aligned_buffer((size_t)KILN_OUTPUT_BYTES[i]);
    int status = kiln_run(weights, workspace, inputs, outputs);
    if (status != 0) {
        fprintf(stderr, "kiln_run failed with status %d\n", status);
        return 1;
    }
    for (int i = 0; i < KILN_NUM_OUTPUTS; i++) {
        const char *path = argv[2 + KILN_NUM_INPUTS + i];
        FILE *file = fopen(path, "wb");
        if (!file || fwrite(outputs[i], 1, (size_t)KILN_OUTPUT_BYTES[i], file) != (size_t)KILN_OUTPUT_BYTES[i]) {
            fprintf(stderr, "cannot write %s\n", path);
            return 2;
        }
        fclose(file);
        printf("wrote %s (%s, %lld bytes)\n", path, KILN_OUTPUT_NAMES[i], (long long)KILN_OUTPUT_BYTES[i]);
    }
    return 0;
}

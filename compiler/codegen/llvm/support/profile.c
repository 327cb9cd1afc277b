/* Kiln CPU support: the clock behind per-kernel profiles, linked into every cpu artifact.
 *
 * kiln_run_profiled (generated, see aot.py) reads this clock before and after each kernel when
 * given a profile buffer; kiln_run never calls it. Hidden: it is not part of the library's API.
 */
#include <stdint.h>
#include <time.h>

__attribute__((visibility("hidden"))) int64_t kiln_clock_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* Kiln CPU support: a fixed-size thread pool and parallel_for, linked into every cpu artifact.
 *
 * A kernel is `void task(void **args, int64_t begin, int64_t end)`: it computes work items
 * [begin, end) of its output. parallel_for splits [0, n) into one contiguous chunk per thread,
 * so every work item is computed by the same code whatever the thread count: results are
 * bit-identical for any thread count. Calls from several host threads are serialized.
 *
 * Kernels follow each other closely, so waiting threads first spin a little (about 0.1 ms)
 * before sleeping on a condition variable: waking a sleeping thread costs more than most
 * small kernels take. kiln_release_threads stops and joins the workers (the runtime calls it when
 * a model is closed or collected); a later parallel_for starts a pool again.
 */
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

typedef void (*kiln_task_fn)(void **args, int64_t begin, int64_t end);

#define KILN_MAX_THREADS 256
#define KILN_SPIN_LIMIT 4000

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_ready = PTHREAD_COND_INITIALIZER;
static pthread_cond_t work_done = PTHREAD_COND_INITIALIZER;
static pthread_t workers[KILN_MAX_THREADS];
static int pool_size = 0; /* threads taking part, the caller included; 0 = not started */
static uint64_t generation = 0;
static uint64_t pool_start_generation = 0; /* generation when the current workers were created */
static int pending = 0;
static int stopping = 0;
static kiln_task_fn job_fn;
static void **job_args;
static int64_t job_n;

static void run_chunk(int index, int count) {
    int64_t begin = job_n * index / count, end = job_n * (index + 1) / count;
    if (begin < end) job_fn(job_args, begin, end);
}

static int job_posted(uint64_t seen) {
    return __atomic_load_n(&generation, __ATOMIC_ACQUIRE) != seen || __atomic_load_n(&stopping, __ATOMIC_ACQUIRE);
}

static void *worker_main(void *arg) {
    int index = (int)(intptr_t)arg;
    pthread_mutex_lock(&pool_lock);
    /* Not `generation`: a job may already have been posted before this thread got here. */
    uint64_t seen = pool_start_generation;
    pthread_mutex_unlock(&pool_lock);
    for (;;) {
        for (int spin = 0; spin < KILN_SPIN_LIMIT && !job_posted(seen); spin++) cpu_relax();
        pthread_mutex_lock(&pool_lock);
        while (generation == seen && !stopping) pthread_cond_wait(&work_ready, &pool_lock);
        if (stopping) break;
        seen = generation;
        int count = pool_size;
        pthread_mutex_unlock(&pool_lock);
        run_chunk(index, count);
        if (__atomic_sub_fetch(&pending, 1, __ATOMIC_ACQ_REL) == 0) {
            pthread_mutex_lock(&pool_lock);
            pthread_cond_signal(&work_done);
            pthread_mutex_unlock(&pool_lock);
        }
    }
    pthread_mutex_unlock(&pool_lock);
    return NULL;
}

static void stop_pool(void) {
    pthread_mutex_lock(&pool_lock);
    __atomic_store_n(&stopping, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&work_ready);
    pthread_mutex_unlock(&pool_lock);
    for (int i = 1; i < pool_size; i++) pthread_join(workers[i], NULL);
    stopping = 0;
    pool_size = 0;
}

/* Use exactly `count` threads (the caller included); count <= 0 means one per online core. */
int kiln_set_num_threads(int count) {
    if (count <= 0) count = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (count < 1) count = 1;
    if (count > KILN_MAX_THREADS) count = KILN_MAX_THREADS;
    pthread_mutex_lock(&job_lock);
    if (pool_size) stop_pool();
    pool_start_generation = generation;
    int started = 1;
    for (int i = 1; i < count; i++) {
        if (pthread_create(&workers[i], NULL, worker_main, (void *)(intptr_t)i) != 0) break;
        started++;
    }
    pool_size = started;
    pthread_mutex_unlock(&job_lock);
    return started;
}

int kiln_get_num_threads(void) { return pool_size; }

void kiln_release_threads(void) {
    pthread_mutex_lock(&job_lock);
    if (pool_size) stop_pool();
    pthread_mutex_unlock(&job_lock);
}

void kiln_parallel_for(kiln_task_fn fn, void **args, int64_t n) {
    if (n <= 0) return;
    if (pool_size == 0) kiln_set_num_threads(0);
    pthread_mutex_lock(&job_lock);
    if (pool_size == 1 || n == 1) {
        fn(args, 0, n);
        pthread_mutex_unlock(&job_lock);
        return;
    }
    pthread_mutex_lock(&pool_lock);
    job_fn = fn;
    job_args = args;
    job_n = n;
    __atomic_store_n(&pending, pool_size - 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&generation, 1, __ATOMIC_ACQ_REL);
    pthread_cond_broadcast(&work_ready);
    pthread_mutex_unlock(&pool_lock);
    run_chunk(0, pool_size);
    for (int spin = 0; spin < KILN_SPIN_LIMIT && __atomic_load_n(&pending, __ATOMIC_ACQUIRE) > 0; spin++) cpu_relax();
    pthread_mutex_lock(&pool_lock);
    while (__atomic_load_n(&pending, __ATOMIC_ACQUIRE) > 0) pthread_cond_wait(&work_done, &pool_lock);
    pthread_mutex_unlock(&pool_lock);
    pthread_mutex_unlock(&job_lock);
}

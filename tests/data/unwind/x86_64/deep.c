/* x86_64 test program for hud's unwinder: two threads run a known deep call chain of
 * functions with different frame sizes, a detour through glibc's qsort (which calls back
 * into cmp), a CPU-bound leaf and a nanosleep. tests/root/test_unwind_*.py build it with
 * and without frame pointers. Argument: recursion depth (default 12). */
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <time.h>

volatile unsigned long sink;
static int arr[64];

__attribute__((noinline)) void leaf_spin(int n) {
    for (int i = 0; i < n; i++) sink += i * 7;
}
__attribute__((noinline)) void leaf_sleep(void) {
    struct timespec ts = {0, 200000};
    nanosleep(&ts, 0);
}
int depth_target = 12;
__attribute__((noinline)) int recurse(int d);
static int cmp(const void *a, const void *b) {
    static int inside;
    if (!inside) { inside = 1; recurse(depth_target / 2); inside = 0; }
    return (*(const int *)a) - (*(const int *)b);
}
__attribute__((noinline)) int recurse(int d) {
    char buf[64 + (d & 7) * 16];
    memset(buf, d, sizeof buf);
    if (d == 0) {
        leaf_spin(20000);
        leaf_sleep();
        return buf[3];
    }
    if (d == depth_target / 2 + 1) {
        for (int i = 0; i < 64; i++) arr[i] = 64 - i;
        qsort(arr, 64, sizeof(int), cmp);
    }
    return recurse(d - 1) + buf[d % 64];
}
static void *worker(void *p) {
    for (;;) recurse(depth_target);
    return p;
}
int main(int argc, char **argv) {
    if (argc > 1) depth_target = atoi(argv[1]);
    pthread_t t;
    pthread_create(&t, 0, worker, 0);
    for (;;) recurse(depth_target);
}

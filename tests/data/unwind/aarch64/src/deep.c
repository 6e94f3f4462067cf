/* A small aarch64 test program for hud's unwinder vectors: a known deep call chain of
 * functions with different frame sizes, a leaf, and a detour through glibc (qsort calls
 * back into our code, nanosleep enters the kernel). Built without and with frame pointers
 * by scripts/gen-aarch64-vectors; run under qemu-aarch64 with gdb-multiarch attached. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

volatile unsigned long sink;
static int arr[32];
static int depth_target = 9;

__attribute__((noinline)) void leaf(int n) {
    for (int i = 0; i < n; i++) sink += (unsigned long)i * 7;
}

__attribute__((noinline)) void nap(void) {
    struct timespec ts = {0, 1000};
    nanosleep(&ts, 0);
}

__attribute__((noinline)) int recurse(int d);

static int cmp(const void *a, const void *b) {
    static int inside;
    if (!inside) {
        inside = 1;
        recurse(3);
        inside = 0;
    }
    return (*(const int *)a) - (*(const int *)b);
}

__attribute__((noinline)) int recurse(int d) {
    char buf[48 + (d & 3) * 32];
    memset(buf, d, sizeof buf);
    if (d == 0) {
        leaf(100);
        nap();
        return buf[3];
    }
    if (d == depth_target - 2) {
        for (int i = 0; i < 32; i++) arr[i] = 32 - i;
        qsort(arr, 32, sizeof(int), cmp);
    }
    return recurse(d - 1) + buf[d % 48];
}

int main(int argc, char **argv) {
    int total = 0;
    if (argc > 1) depth_target = atoi(argv[1]);
    for (int i = 0; i < 2; i++) total += recurse(depth_target);
    return total & 1;
}

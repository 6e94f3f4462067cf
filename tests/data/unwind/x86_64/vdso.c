/* x86_64 test program for hud's unwinder: a hot loop in the vdso (clock_gettime) under a
 * short known call chain, so that most samples start inside [vdso]. */
#include <time.h>
volatile long sink;
__attribute__((noinline)) void tick(void) { struct timespec ts; for (int i = 0; i < 1000; i++) { clock_gettime(CLOCK_MONOTONIC, &ts); sink += ts.tv_nsec; } }
__attribute__((noinline)) void mid(int d) { if (d) mid(d - 1); else tick(); }
int main(void) { for (;;) mid(5); }

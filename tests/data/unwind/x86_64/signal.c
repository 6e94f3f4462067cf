/* x86_64 test program for hud's unwinder: a signal handler running on top of a known
 * call chain, so stacks cross the kernel's signal frame (__restore_rt, an 'S' CIE). */
#include <signal.h>
#include <string.h>
#include <sys/time.h>
volatile unsigned long sink;
__attribute__((noinline)) void in_handler(int n) { for (int i = 0; i < n; i++) sink += i; }
/* Long enough to fill most of the 20 ms timer period: snapshots must catch it often. */
static void handler(int sig) { in_handler(8000000 + sig); }
__attribute__((noinline)) void spin(void) { for (int i = 0; i < 100000; i++) sink ^= i; }
__attribute__((noinline)) int chain(int d) { char b[40 + d * 8]; memset(b, d, sizeof b); if (d) return chain(d - 1) + b[1]; spin(); return b[2]; }
int main(void) {
    struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = handler; sigaction(SIGALRM, &sa, 0);
    struct itimerval it = {{0, 20000}, {0, 20000}}; setitimer(ITIMER_REAL, &it, 0);
    for (;;) chain(6);
}

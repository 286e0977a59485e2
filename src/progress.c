/* Progress lines for training. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <time.h>
#include <unistd.h>

#include "morphogen/progress.h"

double mg_monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void mg_progress_init(mg_progress *p, FILE *out, int every)
{
    p->out = out;
    p->is_tty = isatty(fileno(out));
    p->every = every > 0 ? every : 1;
    p->last_draw = -1e9;
}

void mg_format_duration(double seconds, char *buf, size_t len)
{
    if (!(seconds >= 0) || seconds > 1e8) {
        snprintf(buf, len, "?");
        return;
    }
    const long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, len, "%ldh%02ldm%02lds", s / 3600, (s / 60) % 60, s % 60);
    else if (s >= 60)
        snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(buf, len, "%lds", s);
}

static void format_rate(double r, char *buf, size_t len)
{
    if (r >= 1e9)
        snprintf(buf, len, "%.2fG", r / 1e9);
    else if (r >= 1e6)
        snprintf(buf, len, "%.2fM", r / 1e6);
    else if (r >= 1e3)
        snprintf(buf, len, "%.1fk", r / 1e3);
    else
        snprintf(buf, len, "%.0f", r);
}

void mg_progress_update(mg_progress *p, int64_t it, int64_t total, double loss, double rate, double cell_rate,
                        double now)
{
    const int last = it == total;
    if (p->is_tty) {
        if (!last && now - p->last_draw < 0.1)
            return;
    } else if (it % p->every != 0 && !last) {
        return;
    }
    p->last_draw = now;
    char eta[32], cells[32];
    mg_format_duration(rate > 0 ? (double)(total - it) / rate : -1, eta, sizeof eta);
    format_rate(cell_rate, cells, sizeof cells);
    fprintf(p->out, "%siter %lld/%lld  loss %.4e  log10 %.3f  %.2f it/s  %s cell-steps/s  ETA %s%s",
            p->is_tty ? "\r" : "", (long long)it, (long long)total, loss, log10(loss), rate, cells, eta,
            p->is_tty ? "\033[K" : "\n");
    fflush(p->out);
}

void mg_progress_finish(mg_progress *p)
{
    if (p->is_tty) {
        fputc('\n', p->out);
        fflush(p->out);
    }
}

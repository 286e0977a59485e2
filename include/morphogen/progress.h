/* Training progress on stderr: a live line on a terminal, plain lines every
 * N iterations otherwise (logs of batch jobs). */
#ifndef MORPHOGEN_PROGRESS_H
#define MORPHOGEN_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct mg_progress {
    FILE *out;
    int is_tty;
    int every;           /* plain-line interval */
    double last_draw;    /* seconds, tty redraw throttle */
} mg_progress;

void mg_progress_init(mg_progress *p, FILE *out, int every);

/* Report iteration `it` of `total`. `rate` is iterations/s over the current
 * session, `cell_rate` cell-steps/s of the last iteration. */
void mg_progress_update(mg_progress *p, int64_t it, int64_t total, double loss, double rate, double cell_rate,
                        double now);

/* End a live line (newline on a terminal) before other output. */
void mg_progress_finish(mg_progress *p);

/* Seconds on the monotonic clock (for rates and durations). */
double mg_monotonic_seconds(void);

/* Format seconds as "1h02m03s" / "4m05s" / "6s". */
void mg_format_duration(double seconds, char *buf, size_t len);

#endif

/* `morphogen train`: new runs and resumes. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"
#include "morphogen/comm.h"
#include "morphogen/config.h"
#include "morphogen/progress.h"
#include "morphogen/train.h"

static const char USAGE[] =
    "usage: morphogen train [CONFIG] [--set section.key=value ...] [--out RUN.h5] [--resume RUN.h5]\n"
    "\n"
    "Train a Neural Cellular Automaton. CONFIG is an INI file (see configs/ and the README\n"
    "for every key); without it the built-in defaults (Distill's lizard recipe) are used.\n"
    "\n"
    "  --set section.key=value  override one config key (repeatable), e.g. --set train.iterations=500\n"
    "  --out RUN.h5             run file to write (default: CONFIG's name with .h5, or morphogen.h5;\n"
    "                           with --resume, the resumed file)\n"
    "  --resume RUN.h5          continue a run from its last checkpoint, bit for bit; only\n"
    "                           train.iterations, train.checkpoint_steps and run.* may be changed\n"
    "                           (other keys only to the value the run already has)\n"
    "\n"
    "Exit status: 0 done, 1 error, 2 bad flags or config, 3 loss became NaN/Inf (the run file\n"
    "keeps the last good checkpoint), 75 stopped by SIGINT/SIGTERM/SIGUSR1 after writing a\n"
    "checkpoint (resume with --resume).\n";

static volatile sig_atomic_t stop_requested = 0;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void install_signal_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

/* The config file verbatim plus the overrides, for the run file. */
static char *config_source_text(const char *path, int n_sets, char **sets)
{
    size_t len = 0, cap = 4096;
    char *text = malloc(cap);
    if (!text)
        return NULL;
    text[0] = '\0';
    if (path) {
        FILE *f = fopen(path, "rb");
        if (f) {
            size_t n;
            char buf[4096];
            while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
                if (len + n + 1 > cap) {
                    while (len + n + 1 > cap)
                        cap *= 2;
                    char *grown = realloc(text, cap);
                    if (!grown) {
                        fclose(f);
                        free(text);
                        return NULL;
                    }
                    text = grown;
                }
                memcpy(text + len, buf, n);
                len += n;
                text[len] = '\0';
            }
            fclose(f);
        }
    }
    for (int i = 0; i < n_sets; i++) {
        const size_t need = len + strlen(sets[i]) + 16;
        if (need > cap) {
            cap = need * 2;
            char *grown = realloc(text, cap);
            if (!grown) {
                free(text);
                return NULL;
            }
            text = grown;
        }
        len += (size_t)sprintf(text + len, "%s; --set %s\n", len > 0 && text[len - 1] != '\n' ? "\n" : "", sets[i]);
    }
    return text;
}

/* "configs/lizard.ini" -> "lizard.h5" */
static char *default_out_path(const char *config_path)
{
    if (!config_path)
        return strdup("morphogen.h5");
    const char *base = strrchr(config_path, '/');
    base = base ? base + 1 : config_path;
    const char *dot = strrchr(base, '.');
    const size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    char *out = malloc(n + 4);
    if (out) {
        memcpy(out, base, n);
        memcpy(out + n, ".h5", 4);
    }
    return out;
}

/* Only rank 0 talks while every rank parses the same flags: the other
 * ranks' stdout and stderr point at /dev/null meanwhile. */
typedef struct quiet_streams {
    int saved_out, saved_err;
} quiet_streams;

static void quiet_begin(const mg_comm *comm, quiet_streams *q)
{
    q->saved_out = q->saved_err = -1;
    if (comm->rank == 0)
        return;
    const int null_fd = open("/dev/null", O_WRONLY);
    if (null_fd < 0)
        return;
    fflush(stdout);
    fflush(stderr);
    q->saved_out = dup(STDOUT_FILENO);
    q->saved_err = dup(STDERR_FILENO);
    dup2(null_fd, STDOUT_FILENO);
    dup2(null_fd, STDERR_FILENO);
    close(null_fd);
}

static void quiet_end(quiet_streams *q)
{
    fflush(stdout);
    fflush(stderr);
    if (q->saved_out >= 0) {
        dup2(q->saved_out, STDOUT_FILENO);
        close(q->saved_out);
    }
    if (q->saved_err >= 0) {
        dup2(q->saved_err, STDERR_FILENO);
        close(q->saved_err);
    }
}

/* After a step every rank took, where some may have failed: when all
 * succeeded returns 1; otherwise the lowest failing rank prints its error
 * (one line for the job, naming the rank unless it is 0) and every rank
 * returns 0. */
static int all_succeeded(mg_comm *comm, int ok, const mg_error *err)
{
    if (mg_comm_all(comm, ok))
        return 1;
    if (comm->rank == mg_comm_lowest_rank(comm, !ok)) {
        if (comm->rank == 0)
            fprintf(stderr, "morphogen: %s\n", err->msg);
        else
            fprintf(stderr, "morphogen (rank %d of %d): %s\n", comm->rank, comm->size, err->msg);
    }
    return 0;
}

typedef struct train_args {
    const char *config_path, *out_path, *resume_path;
    char **sets;
    int n_sets;
} train_args;

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, train_args *a)
{
    int missing = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return MG_EXIT_OK;
        } else if ((v = mg_cli_value("train", "--set", argc, argv, &i, &missing))) {
            a->sets[a->n_sets++] = (char *)v;
        } else if ((v = mg_cli_value("train", "--out", argc, argv, &i, &missing))) {
            a->out_path = v;
        } else if ((v = mg_cli_value("train", "--resume", argc, argv, &i, &missing))) {
            a->resume_path = v;
        } else if (missing || mg_cli_positional("train", argv[i], &a->config_path) != 0) {
            return MG_EXIT_USAGE;
        }
    }
    if (a->resume_path && a->config_path) {
        fprintf(stderr, "morphogen train: give either CONFIG or --resume RUN.h5, not both (a resumed run "
                        "keeps its own config)\n");
        return MG_EXIT_USAGE;
    }
    return -1;
}

/* Set up the trainer (identically on every rank). Returns 0 or an exit status
 * with err filled. */
static int set_up(mg_trainer *t, train_args *a, mg_comm *comm, char **source, char **out_owned, mg_error *err)
{
    if (a->resume_path) {
        if (!a->out_path)
            a->out_path = a->resume_path;
        return mg_trainer_resume(t, a->resume_path, a->n_sets, a->sets, comm, err);
    }
    mg_config cfg;
    mg_config_defaults(&cfg);
    const char *name = a->config_path ? a->config_path : "built-in defaults";
    if (a->config_path && mg_config_load(&cfg, a->config_path, err) != 0)
        return MG_EXIT_USAGE;
    for (int i = 0; i < a->n_sets; i++)
        if (mg_config_set(&cfg, a->sets[i], err) != 0)
            return MG_EXIT_USAGE;
    if (mg_config_validate(&cfg, name, err) != 0 || mg_trainer_check_ranks(&cfg, comm, name, err) != 0)
        return MG_EXIT_USAGE;
    *source = config_source_text(a->config_path, a->n_sets, a->sets);
    if (!a->out_path)
        a->out_path = *out_owned = default_out_path(a->config_path);
    if (!*source || !a->out_path) {
        mg_fail(err, "out of memory");
        return MG_EXIT_ERROR;
    }
    return mg_trainer_init(t, &cfg, *source, comm, err) != 0 ? MG_EXIT_ERROR : 0;
}

int mg_cmd_train(int argc, char **argv)
{
    mg_comm comm;
    mg_error err = {{0}};
    if (mg_comm_init(&argc, &argv, &comm, &err) != 0) {
        fprintf(stderr, "morphogen: %s\n", err.msg);
        return MG_EXIT_ERROR;
    }
    train_args args = {NULL, NULL, NULL, calloc((size_t)argc, sizeof(char *)), 0};
    char *source = NULL, *out_owned = NULL;
    mg_trainer trainer;
    memset(&trainer, 0, sizeof trainer);
    int status = MG_EXIT_ERROR;
    if (!args.sets)
        goto done;

    quiet_streams q;
    quiet_begin(&comm, &q);
    status = parse_args(argc, argv, &args);
    quiet_end(&q);
    if (status >= 0)
        goto done;

    /* Set-up can fail on some ranks only (a file one node cannot read):
     * agree, and let the lowest failing rank say why. */
    status = set_up(&trainer, &args, &comm, &source, &out_owned, &err);
    if (!all_succeeded(&comm, status == 0, &err)) {
        status = mg_comm_any(&comm, status == MG_EXIT_USAGE) ? MG_EXIT_USAGE : MG_EXIT_ERROR;
        goto done;
    }

    install_signal_handlers();
    const mg_config *cfg = &trainer.cfg;
    mg_train_options opt = {args.out_path, &stop_requested, stderr, 0, -1, 0, -1, 0};
    /* Every rank reads its own environment; a bad value is a usage error. */
    if (!all_succeeded(&comm, mg_cli_test_hooks(&opt, comm.size, &err) == 0, &err)) {
        status = MG_EXIT_USAGE;
        goto done;
    }
    if (comm.rank == 0)
        fprintf(stderr, "morphogen: %s %s -> %s: %dx%d grid, %d channels, %lld parameters, %s backend, "
                        "%d rank%s, iterations %lld..%d\n",
                args.resume_path ? "resuming" : "training",
                args.resume_path ? args.resume_path : (args.config_path ? args.config_path : "defaults"),
                args.out_path, trainer.dims.height, trainer.dims.width, cfg->channels, (long long)trainer.n_params,
                cfg->backend, comm.size, comm.size > 1 ? "s" : "", (long long)trainer.iteration + 1, cfg->iterations);
    if (comm.size > 1) {
        /* Which device a rank will use is decided by its node-local rank. */
        fprintf(stderr, "morphogen (rank %d of %d): node-local rank %d of %d, batch positions %d..%d, pool "
                        "samples %lld..%lld\n",
                comm.rank, comm.size, comm.local_rank, comm.local_size, trainer.batch_first,
                trainer.batch_first + trainer.batch_count - 1, (long long)trainer.pool_first,
                (long long)(trainer.pool_first + trainer.pool_count - 1));
    }
    const int64_t first_iteration = trainer.iteration;
    const double session_start = mg_monotonic_seconds();
    status = mg_trainer_run(&trainer, &opt, &err);
    if (status == MG_EXIT_OK && comm.rank == 0) {
        const double session = mg_monotonic_seconds() - session_start;
        const int64_t done_here = trainer.iteration - first_iteration;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        const mg_metrics_row *last = trainer.n_metrics ? &trainer.metrics[trainer.n_metrics - 1] : NULL;
        const double pool_mib = (double)trainer.pool_count * mg_cells(&trainer.dims) * cfg->channels * 4 / 1048576.0;
        char device[96] = "";
        const size_t device_bytes = trainer.backend->ops->peak_device_bytes(trainer.backend);
        if (device_bytes > 0)
            snprintf(device, sizeof device, ", GPU memory %.0f MiB in morphogen's allocations on rank 0's GPU",
                     (double)device_bytes / 1048576.0);
        fprintf(stderr, "morphogen: done: %lld iterations, final loss %.4e, peak memory %.0f MiB resident on "
                        "rank 0 (pool shard %.0f MiB, rollout tape %.1f MiB)%s, %.3f s per iteration, "
                        "communication %.1f%% of it (%.0f KiB received per iteration), run file %s\n",
                (long long)trainer.iteration, last ? last->loss : 0.0, ru.ru_maxrss / 1024.0, pool_mib,
                trainer.backend->ops->peak_tape_bytes(trainer.backend) / 1048576.0, device,
                done_here > 0 ? session / done_here : 0.0, session > 0 ? 100.0 * comm.seconds / session : 0.0,
                done_here > 0 ? comm.bytes / 1024.0 / done_here : 0.0, args.out_path);
    }
    if ((status == MG_EXIT_ERROR || status == MG_EXIT_NONFINITE) && comm.rank == 0)
        fprintf(stderr, "morphogen: %s\n", err.msg);

done:
    mg_trainer_free(&trainer);
    free(source);
    free(out_owned);
    free(args.sets);
    mg_comm_finalize(&comm);
    return status;
}

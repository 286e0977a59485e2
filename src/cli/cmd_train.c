/* `morphogen train`: new runs and resumes. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "morphogen/config.h"
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

/* Launched as one of several MPI ranks (mpirun/srun)? Multi-rank training
 * is not implemented yet; running N independent copies that overwrite one
 * run file would silently waste the allocation, so refuse instead. */
static int launched_ranks(void)
{
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"};
    int n = 1;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > n)
            n = atoi(v);
    }
    return n;
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

int mg_cmd_train(int argc, char **argv)
{
    const char *config_path = NULL, *out_path = NULL, *resume_path = NULL;
    char **sets = calloc((size_t)argc, sizeof *sets);
    int n_sets = 0, missing = 0, status = MG_EXIT_USAGE;
    char *source = NULL, *out_owned = NULL;
    mg_trainer trainer;
    int have_trainer = 0;
    mg_error err = {{0}};
    if (!sets)
        return MG_EXIT_ERROR;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            status = MG_EXIT_OK;
            goto done;
        } else if ((v = mg_cli_value("train", "--set", argc, argv, &i, &missing))) {
            sets[n_sets++] = (char *)v;
        } else if ((v = mg_cli_value("train", "--out", argc, argv, &i, &missing))) {
            out_path = v;
        } else if ((v = mg_cli_value("train", "--resume", argc, argv, &i, &missing))) {
            resume_path = v;
        } else if (missing) {
            goto done;
        } else if (mg_cli_positional("train", argv[i], &config_path) != 0) {
            goto done;
        }
        if (missing)
            goto done;
    }
    if (launched_ranks() > 1) {
        fprintf(stderr, "morphogen train: launched as %d MPI ranks, but multi-rank training is not "
                        "implemented yet; run one process\n", launched_ranks());
        goto done;
    }
    if (resume_path && config_path) {
        fprintf(stderr, "morphogen train: give either CONFIG or --resume RUN.h5, not both (a resumed run "
                        "keeps its own config)\n");
        goto done;
    }

    if (resume_path) {
        if (mg_trainer_resume(&trainer, resume_path, n_sets, sets, &err) != 0) {
            status = strncmp(err.msg, "--set", 5) == 0 ? MG_EXIT_USAGE : MG_EXIT_ERROR;
            mg_trainer_free(&trainer);
            goto report;
        }
        have_trainer = 1;
        if (!out_path)
            out_path = resume_path;
    } else {
        mg_config cfg;
        mg_config_defaults(&cfg);
        if (config_path && mg_config_load(&cfg, config_path, &err) != 0)
            goto report;
        for (int i = 0; i < n_sets; i++)
            if (mg_config_set(&cfg, sets[i], &err) != 0)
                goto report;
        if (mg_config_validate(&cfg, config_path ? config_path : "built-in defaults", &err) != 0)
            goto report;
        status = MG_EXIT_ERROR;
        source = config_source_text(config_path, n_sets, sets);
        if (!out_path)
            out_path = out_owned = default_out_path(config_path);
        if (!source || !out_path) {
            mg_fail(&err, "out of memory");
            goto report;
        }
        if (mg_trainer_init(&trainer, &cfg, source, &err) != 0) {
            mg_trainer_free(&trainer);
            goto report;
        }
        have_trainer = 1;
    }

    install_signal_handlers();
    const mg_config *cfg = &trainer.cfg;
    const char *nan_at = getenv("MORPHOGEN_TEST_NAN_AT");
    const mg_train_options opt = {out_path, &stop_requested, stderr, nan_at ? atoll(nan_at) : 0};
    fprintf(stderr, "morphogen: %s %s -> %s: %dx%d grid, %d channels, %lld parameters, %s backend, "
                    "iterations %lld..%d\n",
            resume_path ? "resuming" : "training", resume_path ? resume_path : (config_path ? config_path : "defaults"),
            out_path, trainer.dims.height, trainer.dims.width, cfg->channels, (long long)trainer.n_params,
            cfg->backend, (long long)trainer.iteration + 1, cfg->iterations);
    status = mg_trainer_run(&trainer, &opt, &err);
    if (status == MG_EXIT_OK) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        const mg_metrics_row *last = trainer.n_metrics ? &trainer.metrics[trainer.n_metrics - 1] : NULL;
        const double pool_mib = (double)cfg->pool_size * mg_cells(&trainer.dims) * cfg->channels * 4 / 1048576.0;
        fprintf(stderr, "morphogen: done: %lld iterations, final loss %.4e, peak memory %.0f MiB resident "
                        "(pool %.0f MiB, rollout tape %.1f MiB), run file %s\n",
                (long long)trainer.iteration, last ? last->loss : 0.0, ru.ru_maxrss / 1024.0, pool_mib,
                trainer.backend->ops->peak_tape_bytes(trainer.backend) / 1048576.0, out_path);
    }
    if (status == MG_EXIT_ERROR || status == MG_EXIT_NONFINITE)
        goto report;
    goto done;

report:
    fprintf(stderr, "morphogen: %s\n", err.msg);
done:
    if (have_trainer)
        mg_trainer_free(&trainer);
    free(source);
    free(out_owned);
    free(sets);
    return status;
}

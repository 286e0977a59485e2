/* Subcommands of the morphogen executable. Each takes argv with argv[0] the
 * subcommand name and returns the process exit status (error.h). */
#ifndef MORPHOGEN_CLI_H
#define MORPHOGEN_CLI_H

#include "morphogen/error.h"
#include "morphogen/train.h"

int mg_cmd_train(int argc, char **argv);
int mg_cmd_grow(int argc, char **argv);
int mg_cmd_grad(int argc, char **argv);
int mg_cmd_target(int argc, char **argv);

/* Parse a non-negative int flag value; on error prints
 * "morphogen CMD: FLAG: ..." and returns -1. */
int mg_cli_int(const char *cmd, const char *flag, const char *text, int min, int max, int *out);

/* "--flag value" or "--flag=value": returns the value and advances *i, or
 * NULL when argv[*i] is not this flag. Prints an error and sets *missing
 * when the value is absent. */
const char *mg_cli_value(const char *cmd, const char *flag, int argc, char **argv, int *i, int *missing);

/* An argument that is no known flag: the first positional goes to *slot;
 * an unknown flag or a second positional prints an error and returns
 * MG_EXIT_USAGE (0 otherwise). */
int mg_cli_positional(const char *cmd, const char *arg, const char **slot);

/* The test suite's fault injections (MORPHOGEN_TEST_NAN_AT, _FAIL,
 * _DIVERGE; test_hooks.c) into opt, for a job of n_ranks ranks. Returns 0,
 * or -1 with err naming the variable and its value. */
int mg_cli_test_hooks(mg_train_options *opt, int n_ranks, mg_error *err);

#endif

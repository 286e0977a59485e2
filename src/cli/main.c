/* morphogen: train, grow and inspect Neural Cellular Automata. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "morphogen/error.h"

static const char USAGE[] =
    "usage: morphogen COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  train [CONFIG] [--set section.key=value ...] [--out RUN.h5] [--resume RUN.h5]\n"
    "                          train an NCA; CONFIG is an INI file (built-in defaults if omitted)\n"
    "  grow RUN.h5 [--steps N] [--out GROW.h5]\n"
    "                          grow the trained model from its seed; frames to HDF5 and a PNG strip\n"
    "  grad RUN.h5 --states STATES.h5 --steps N --out GRAD.h5\n"
    "                          loss and every gradient for given input states (cross-checks)\n"
    "  target SPEC --out FILE.png\n"
    "                          render a target (emoji:🦎, emoji:U+1F98E or a PNG) to look at\n"
    "\n"
    "`morphogen COMMAND --help` describes each command. Version " MORPHOGEN_VERSION ".\n";

int main(int argc, char **argv)
{
    /* HDF5 1.10 closes its objects in an atexit handler; after a failed
     * H5Fclose (a full disk) that handler dereferences a half-closed file
     * and crashes, turning a clean "disk full" exit 1 into a segfault.
     * Every file is closed explicitly, so the handler is not needed.
     * Opening the library here, before any MPI_Init, keeps HDF5 from moving
     * that clean-up into MPI_Finalize, where it would crash the same way. */
    H5dont_atexit();
    H5open();
    if (argc < 2) {
        fputs(USAGE, stderr);
        return MG_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(USAGE, stdout);
        return MG_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("morphogen %s\n", MORPHOGEN_VERSION);
        return MG_EXIT_OK;
    }
    if (strcmp(cmd, "train") == 0)
        return mg_cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "grow") == 0)
        return mg_cmd_grow(argc - 1, argv + 1);
    if (strcmp(cmd, "grad") == 0)
        return mg_cmd_grad(argc - 1, argv + 1);
    if (strcmp(cmd, "target") == 0)
        return mg_cmd_target(argc - 1, argv + 1);
    fprintf(stderr, "morphogen: unknown command '%s' (commands: train, grow, grad, target; see morphogen --help)\n",
            cmd);
    return MG_EXIT_USAGE;
}

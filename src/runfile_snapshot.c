/* Releasing what mg_runfile_read allocated. */
#include "morphogen/runfile.h"

#include <stdlib.h>
#include <string.h>

void mg_run_snapshot_free(mg_run_snapshot *snap)
{
    if (!snap)
        return;
    free(snap->config_text);
    free(snap->config_source);
    free(snap->targets);
    free(snap->params);
    free(snap->adam_m);
    free(snap->adam_v);
    free(snap->pool_states);
    free(snap->pool_loss);
    free(snap->pool_target);
    free(snap->metrics);
    /* Zeroed so that a second free, or a read into the same struct after a
     * failed one, is harmless. */
    memset(snap, 0, sizeof *snap);
}

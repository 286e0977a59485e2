/* The training operations (mg_train_ops) on state in host memory: the cpu
 * backend's, and the reference that every other backend's must match. The
 * state is the trainer's own arrays, so train_sync has nothing to do. */
#ifndef MORPHOGEN_TRAIN_HOST_H
#define MORPHOGEN_TRAIN_HOST_H

#include "morphogen/backend.h"

typedef struct mg_train_host {
    mg_train_state s;
    float *batch_states; /* [batch_count][cells][C] */
    float *grads;        /* [batch][n_params]: this rank's positions, then everyone's after exchange */
} mg_train_host;

int mg_train_host_attach(mg_train_host *h, const mg_train_state *s, mg_error *err);
int mg_train_host_gather(mg_train_host *h, const mg_train_batch *b, double *loss, mg_error *err);
/* Rolls out with `be`'s batch operation on host arrays. */
int mg_train_host_rollouts(mg_train_host *h, mg_backend *be, const mg_train_batch *b, double *loss, mg_error *err);
int mg_train_host_exchange(mg_train_host *h, mg_error *err);
int mg_train_host_reduce(mg_train_host *h, double *norms, mg_error *err);
int mg_train_host_apply(mg_train_host *h, const mg_train_batch *b, const double *norms, double lr, int64_t adam_step,
                        mg_error *err);
void mg_train_host_free(mg_train_host *h);

#endif

/* Parameter layout of the update MLP and scratch sizing, shared by both
 * precisions of the NCA core and by every backend. */
#include "morphogen/nca.h"

int64_t mg_param_layout(const mg_nca_dims *d, mg_tensor_desc out[3])
{
    const int64_t K = 3 * (int64_t)d->channels, H = d->hidden, C = d->channels;
    out[0] = (mg_tensor_desc){"w1", 2, {K, H}, 0, K * H};
    out[1] = (mg_tensor_desc){"b1", 1, {H, 0}, K * H, H};
    out[2] = (mg_tensor_desc){"w2", 2, {H, C}, K * H + H, H * C};
    return K * H + H + H * C;
}

size_t mg_nca_scratch_bytes(const mg_nca_dims *d)
{
    /* Mirrors carve_scratch() in src/nca/scratch.h with 8-byte reals and
     * 64 bytes of alignment slack per block. */
    const size_t cells = (size_t)d->height * d->width, K = 3 * (size_t)d->channels;
    const size_t H = d->hidden, C = d->channels, tile = MG_NCA_TILE;
    size_t reals = cells + tile * K + tile * H + tile * C + tile * H + tile * K + tile * H + H * K + C * H;
    reals += H * K;                                         /* gw1t */
    return reals * 8 + cells * sizeof(int) + cells + 12 * 64;
}

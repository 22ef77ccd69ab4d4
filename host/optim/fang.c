/* fang.c: FANG for RBMs. Not implemented yet: selecting it is refused with a clear error. */
#include "optim/fang.h"

ng_status ng_fang_init(ng_rbm_trainer *tr) {
    (void)tr;
    return ng_error(NG_ERR_UNSUPPORTED,
                    "--optimizer fang: FANG is not implemented in this build yet (use sgd or centering)");
}
void ng_fang_free(ng_rbm_trainer *tr) { (void)tr; }
ng_status ng_fang_direction(ng_rbm_trainer *tr) {
    (void)tr;
    return ng_error(NG_ERR_UNSUPPORTED, "FANG is not implemented in this build yet");
}
int ng_fang_state_tensors(ng_rbm_trainer *tr, ng_tensor **out, int max) {
    (void)tr;
    (void)out;
    (void)max;
    return 0;
}

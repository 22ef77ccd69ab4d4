/* natgrad/dtype.h: element types of tensors, checkpoints and exports. The numeric codes are part of
 * the checkpoint format (natgrad/checkpoint.h): never renumber them. float32 is the default;
 * float64 holds factors that float32 cannot invert; the 16-bit codes are reserved so files and
 * tensors can name them, but no backend computes in them yet. */
#ifndef NATGRAD_DTYPE_H
#define NATGRAD_DTYPE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ng_dtype {
    NG_F32 = 0,  /* IEEE binary32 */
    NG_F64 = 1,  /* IEEE binary64 */
    NG_F16 = 2,  /* IEEE binary16 (reserved) */
    NG_BF16 = 3, /* bfloat16 (reserved) */
    NG_DTYPE_COUNT
} ng_dtype;

/* Bytes per element (0 for a code outside the enum). */
static inline size_t ng_dtype_size(ng_dtype t) {
    return t == NG_F32 ? 4 : t == NG_F64 ? 8 : (t == NG_F16 || t == NG_BF16) ? 2 : 0;
}
/* "f32", "f64", "f16", "bf16", or "?" */
static inline const char *ng_dtype_name(ng_dtype t) {
    return t == NG_F32 ? "f32" : t == NG_F64 ? "f64" : t == NG_F16 ? "f16" : t == NG_BF16 ? "bf16" : "?";
}

#ifdef __cplusplus
}
#endif
#endif

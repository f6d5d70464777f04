// edgec's test stub of tflite-micro's kernels/pooling.h (90b983c): the same registration
// functions under the same conditions; a variant the build lacks aliases the generic one.
#ifndef EDGEC_TFLM_STUB_KERNELS_POOLING_H_
#define EDGEC_TFLM_STUB_KERNELS_POOLING_H_

#include "tensorflow/lite/micro/kernels/stub_registration.h"

namespace tflite {

EDGEC_STUB_REGISTRATION(Register_AVERAGE_POOL_2D)
EDGEC_STUB_REGISTRATION(Register_MAX_POOL_2D)

#if defined(CMSIS_NN) || defined(XTENSA)
EDGEC_STUB_REGISTRATION(Register_AVERAGE_POOL_2D_INT8)
EDGEC_STUB_REGISTRATION(Register_AVERAGE_POOL_2D_INT16)
#else
inline TFLMRegistration Register_AVERAGE_POOL_2D_INT8() { return Register_AVERAGE_POOL_2D(); }
inline TFLMRegistration Register_AVERAGE_POOL_2D_INT16() { return Register_AVERAGE_POOL_2D(); }
#endif

#if defined(CMSIS_NN) || defined(XTENSA)
EDGEC_STUB_REGISTRATION(Register_MAX_POOL_2D_INT8)
EDGEC_STUB_REGISTRATION(Register_MAX_POOL_2D_INT16)
#else
inline TFLMRegistration Register_MAX_POOL_2D_INT8() { return Register_MAX_POOL_2D(); }
inline TFLMRegistration Register_MAX_POOL_2D_INT16() { return Register_MAX_POOL_2D(); }
#endif

}  // namespace tflite

#endif  // EDGEC_TFLM_STUB_KERNELS_POOLING_H_

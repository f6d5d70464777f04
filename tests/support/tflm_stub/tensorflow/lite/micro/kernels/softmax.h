// edgec's test stub of tflite-micro's kernels/softmax.h (90b983c): the same registration
// functions under the same conditions; a variant the build lacks aliases the generic one.
#ifndef EDGEC_TFLM_STUB_KERNELS_SOFTMAX_H_
#define EDGEC_TFLM_STUB_KERNELS_SOFTMAX_H_

#include "tensorflow/lite/micro/kernels/stub_registration.h"

namespace tflite {

EDGEC_STUB_REGISTRATION(Register_SOFTMAX)

#if defined(XTENSA) || defined(CMSIS_NN)
EDGEC_STUB_REGISTRATION(Register_SOFTMAX_INT8_INT16)
#else
inline TFLMRegistration Register_SOFTMAX_INT8_INT16() { return Register_SOFTMAX(); }
#endif

#if defined(CMSIS_NN)
EDGEC_STUB_REGISTRATION(Register_SOFTMAX_INT8)
EDGEC_STUB_REGISTRATION(Register_SOFTMAX_INT16)
#else
inline TFLMRegistration Register_SOFTMAX_INT8() { return Register_SOFTMAX(); }
inline TFLMRegistration Register_SOFTMAX_INT16() { return Register_SOFTMAX(); }
#endif

}  // namespace tflite

#endif  // EDGEC_TFLM_STUB_KERNELS_SOFTMAX_H_

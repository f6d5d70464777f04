// edgec's test stub of tflite-micro's kernels/mul.h (90b983c): the same registration
// functions under the same conditions; a variant the build lacks aliases the generic one.
#ifndef EDGEC_TFLM_STUB_KERNELS_MUL_H_
#define EDGEC_TFLM_STUB_KERNELS_MUL_H_

#include "tensorflow/lite/micro/kernels/stub_registration.h"

namespace tflite {

EDGEC_STUB_REGISTRATION(Register_MUL)

#if defined(CMSIS_NN)
EDGEC_STUB_REGISTRATION(Register_MUL_INT8)
#else
inline TFLMRegistration Register_MUL_INT8() { return Register_MUL(); }
#endif

}  // namespace tflite

#endif  // EDGEC_TFLM_STUB_KERNELS_MUL_H_

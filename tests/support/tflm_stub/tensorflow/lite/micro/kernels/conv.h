// edgec's test stub of tflite-micro's kernels/conv.h (90b983c): the same registration
// functions under the same conditions; a variant the build lacks aliases the generic one.
#ifndef EDGEC_TFLM_STUB_KERNELS_CONV_H_
#define EDGEC_TFLM_STUB_KERNELS_CONV_H_

#include "tensorflow/lite/micro/kernels/stub_registration.h"

namespace tflite {

EDGEC_STUB_REGISTRATION(Register_CONV_2D)

#if defined(XTENSA)
EDGEC_STUB_REGISTRATION(Register_CONV_2D_INT8REF)
#else
inline TFLMRegistration Register_CONV_2D_INT8REF() { return Register_CONV_2D(); }
#endif

#if defined(CMSIS_NN)
EDGEC_STUB_REGISTRATION(Register_CONV_2D_INT4)
#else
inline TFLMRegistration Register_CONV_2D_INT4() { return Register_CONV_2D(); }
#endif

#if defined(CMSIS_NN) || defined(XTENSA)
EDGEC_STUB_REGISTRATION(Register_CONV_2D_INT8)
EDGEC_STUB_REGISTRATION(Register_CONV_2D_INT16)
#else
inline TFLMRegistration Register_CONV_2D_INT8() { return Register_CONV_2D(); }
inline TFLMRegistration Register_CONV_2D_INT16() { return Register_CONV_2D(); }
#endif

}  // namespace tflite

#endif  // EDGEC_TFLM_STUB_KERNELS_CONV_H_

// edgec's test stub of tflite-micro's kernels/depthwise_conv.h (90b983c): the same registration
// functions under the same conditions; a variant the build lacks aliases the generic one.
#ifndef EDGEC_TFLM_STUB_KERNELS_DEPTHWISE_CONV_H_
#define EDGEC_TFLM_STUB_KERNELS_DEPTHWISE_CONV_H_

#include "tensorflow/lite/micro/kernels/stub_registration.h"

namespace tflite {

EDGEC_STUB_REGISTRATION(Register_DEPTHWISE_CONV_2D)

#if defined(CMSIS_NN)
EDGEC_STUB_REGISTRATION(Register_DEPTHWISE_CONV_2D_INT8)
EDGEC_STUB_REGISTRATION(Register_DEPTHWISE_CONV_2D_INT16)
EDGEC_STUB_REGISTRATION(Register_DEPTHWISE_CONV_2D_INT4)
#else
inline TFLMRegistration Register_DEPTHWISE_CONV_2D_INT8() { return Register_DEPTHWISE_CONV_2D(); }
inline TFLMRegistration Register_DEPTHWISE_CONV_2D_INT16() { return Register_DEPTHWISE_CONV_2D(); }
inline TFLMRegistration Register_DEPTHWISE_CONV_2D_INT4() { return Register_DEPTHWISE_CONV_2D(); }
#endif

}  // namespace tflite

#endif  // EDGEC_TFLM_STUB_KERNELS_DEPTHWISE_CONV_H_

// edgec's test stub of tflite-micro's kernels/transpose_conv.h (90b983c): the same registration
// functions under the same conditions; a variant the build lacks aliases the generic one.
#ifndef EDGEC_TFLM_STUB_KERNELS_TRANSPOSE_CONV_H_
#define EDGEC_TFLM_STUB_KERNELS_TRANSPOSE_CONV_H_

#include "tensorflow/lite/micro/kernels/stub_registration.h"

namespace tflite {

EDGEC_STUB_REGISTRATION(Register_TRANSPOSE_CONV)

#if defined(CMSIS_NN)
EDGEC_STUB_REGISTRATION(Register_TRANSPOSE_CONV_INT8)
#else
inline TFLMRegistration Register_TRANSPOSE_CONV_INT8() { return Register_TRANSPOSE_CONV(); }
#endif

}  // namespace tflite

#endif  // EDGEC_TFLM_STUB_KERNELS_TRANSPOSE_CONV_H_

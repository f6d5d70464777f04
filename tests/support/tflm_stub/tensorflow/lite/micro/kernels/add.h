// edgec's test stub of tflite-micro's kernels/add.h (90b983c): the same registration
// functions under the same conditions; a variant the build lacks aliases the generic one.
#ifndef EDGEC_TFLM_STUB_KERNELS_ADD_H_
#define EDGEC_TFLM_STUB_KERNELS_ADD_H_

#include "tensorflow/lite/micro/kernels/stub_registration.h"

namespace tflite {

EDGEC_STUB_REGISTRATION(Register_ADD)

#if defined(CMSIS_NN)
EDGEC_STUB_REGISTRATION(Register_ADD_INT8)
EDGEC_STUB_REGISTRATION(Register_ADD_INT16)
#else
inline TFLMRegistration Register_ADD_INT8() { return Register_ADD(); }
inline TFLMRegistration Register_ADD_INT16() { return Register_ADD(); }
#endif

}  // namespace tflite

#endif  // EDGEC_TFLM_STUB_KERNELS_ADD_H_

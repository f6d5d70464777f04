// edgec's test stub of tflite-micro's kernels/maximum_minimum.h (90b983c): the same registration
// functions under the same conditions; a variant the build lacks aliases the generic one.
#ifndef EDGEC_TFLM_STUB_KERNELS_MAXIMUM_MINIMUM_H_
#define EDGEC_TFLM_STUB_KERNELS_MAXIMUM_MINIMUM_H_

#include "tensorflow/lite/micro/kernels/stub_registration.h"

namespace tflite {

EDGEC_STUB_REGISTRATION(Register_MAXIMUM)
EDGEC_STUB_REGISTRATION(Register_MINIMUM)

#if defined(CMSIS_NN)
EDGEC_STUB_REGISTRATION(Register_MAXIMUM_INT8)
#else
inline TFLMRegistration Register_MAXIMUM_INT8() { return Register_MAXIMUM(); }
#endif

#if defined(CMSIS_NN)
EDGEC_STUB_REGISTRATION(Register_MINIMUM_INT8)
#else
inline TFLMRegistration Register_MINIMUM_INT8() { return Register_MINIMUM(); }
#endif

}  // namespace tflite

#endif  // EDGEC_TFLM_STUB_KERNELS_MAXIMUM_MINIMUM_H_

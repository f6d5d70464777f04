// edgec's test stub of tflite-micro's kernels/fully_connected.h (90b983c): the same registration
// functions under the same conditions; a variant the build lacks aliases the generic one.
#ifndef EDGEC_TFLM_STUB_KERNELS_FULLY_CONNECTED_H_
#define EDGEC_TFLM_STUB_KERNELS_FULLY_CONNECTED_H_

#include "tensorflow/lite/micro/kernels/stub_registration.h"

namespace tflite {

EDGEC_STUB_REGISTRATION(Register_FULLY_CONNECTED)

#if defined(CMSIS_NN) || defined(HEXAGON) || defined(XTENSA)
EDGEC_STUB_REGISTRATION(Register_FULLY_CONNECTED_INT8)
#else
inline TFLMRegistration Register_FULLY_CONNECTED_INT8() { return Register_FULLY_CONNECTED(); }
#endif

#if defined(CMSIS_NN)
EDGEC_STUB_REGISTRATION(Register_FULLY_CONNECTED_INT16)
EDGEC_STUB_REGISTRATION(Register_FULLY_CONNECTED_INT4)
#else
inline TFLMRegistration Register_FULLY_CONNECTED_INT16() { return Register_FULLY_CONNECTED(); }
inline TFLMRegistration Register_FULLY_CONNECTED_INT4() { return Register_FULLY_CONNECTED(); }
#endif

}  // namespace tflite

#endif  // EDGEC_TFLM_STUB_KERNELS_FULLY_CONNECTED_H_

// edgec's test stub of tflite-micro's kernels/svdf.h (90b983c): the same registration
// functions under the same conditions; a variant the build lacks aliases the generic one.
#ifndef EDGEC_TFLM_STUB_KERNELS_SVDF_H_
#define EDGEC_TFLM_STUB_KERNELS_SVDF_H_

#include "tensorflow/lite/micro/kernels/stub_registration.h"

namespace tflite {

EDGEC_STUB_REGISTRATION(Register_SVDF)

#if defined(HEXAGON) || defined(CMSIS_NN) || defined(XTENSA)
EDGEC_STUB_REGISTRATION(Register_SVDF_INT8)
#else
inline TFLMRegistration Register_SVDF_INT8() { return Register_SVDF(); }
#endif

}  // namespace tflite

#endif  // EDGEC_TFLM_STUB_KERNELS_SVDF_H_

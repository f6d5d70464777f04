// edgec's test stub of tflite-micro's kernels/unidirectional_sequence_lstm.h (90b983c): the same registration
// functions under the same conditions; a variant the build lacks aliases the generic one.
#ifndef EDGEC_TFLM_STUB_KERNELS_UNIDIRECTIONAL_SEQUENCE_LSTM_H_
#define EDGEC_TFLM_STUB_KERNELS_UNIDIRECTIONAL_SEQUENCE_LSTM_H_

#include "tensorflow/lite/micro/kernels/stub_registration.h"

namespace tflite {

EDGEC_STUB_REGISTRATION(Register_UNIDIRECTIONAL_SEQUENCE_LSTM)

#if defined(CMSIS_NN)
EDGEC_STUB_REGISTRATION(Register_UNIDIRECTIONAL_SEQUENCE_LSTM_INT8)
EDGEC_STUB_REGISTRATION(Register_UNIDIRECTIONAL_SEQUENCE_LSTM_INT16)
#else
inline TFLMRegistration Register_UNIDIRECTIONAL_SEQUENCE_LSTM_INT8() { return Register_UNIDIRECTIONAL_SEQUENCE_LSTM(); }
inline TFLMRegistration Register_UNIDIRECTIONAL_SEQUENCE_LSTM_INT16() { return Register_UNIDIRECTIONAL_SEQUENCE_LSTM(); }
#endif

}  // namespace tflite

#endif  // EDGEC_TFLM_STUB_KERNELS_UNIDIRECTIONAL_SEQUENCE_LSTM_H_

// A host stub of tflite-micro's micro_mutable_op_resolver.h for edgec's tests: the
// same Add*() methods with the same default registrations (TFLM 90b983c, 2026-08), each
// recording the name of the registration it was given, so a test can compile a generated
// model_ops.h with g++, run it, and read which kernels it registered. The kernel variant
// declarations live in kernels/*.h with TFLM's own #if conditions (CMSIS_NN, XTENSA).
#ifndef EDGEC_TFLM_STUB_MICRO_MUTABLE_OP_RESOLVER_H_
#define EDGEC_TFLM_STUB_MICRO_MUTABLE_OP_RESOLVER_H_

#include "tensorflow/lite/micro/kernels/stub_registration.h"

#include "tensorflow/lite/micro/kernels/add.h"
#include "tensorflow/lite/micro/kernels/batch_matmul.h"
#include "tensorflow/lite/micro/kernels/conv.h"
#include "tensorflow/lite/micro/kernels/depthwise_conv.h"
#include "tensorflow/lite/micro/kernels/fully_connected.h"
#include "tensorflow/lite/micro/kernels/maximum_minimum.h"
#include "tensorflow/lite/micro/kernels/mul.h"
#include "tensorflow/lite/micro/kernels/pad.h"
#include "tensorflow/lite/micro/kernels/pooling.h"
#include "tensorflow/lite/micro/kernels/softmax.h"
#include "tensorflow/lite/micro/kernels/svdf.h"
#include "tensorflow/lite/micro/kernels/transpose.h"
#include "tensorflow/lite/micro/kernels/transpose_conv.h"
#include "tensorflow/lite/micro/kernels/unidirectional_sequence_lstm.h"

namespace tflite {

EDGEC_STUB_REGISTRATION(Register_ABS)
EDGEC_STUB_REGISTRATION(Register_ADD_N)
EDGEC_STUB_REGISTRATION(Register_ARG_MAX)
EDGEC_STUB_REGISTRATION(Register_ARG_MIN)
EDGEC_STUB_REGISTRATION(Register_ASSIGN_VARIABLE)
EDGEC_STUB_REGISTRATION(Register_BATCH_TO_SPACE_ND)
EDGEC_STUB_REGISTRATION(Register_BROADCAST_ARGS)
EDGEC_STUB_REGISTRATION(Register_BROADCAST_TO)
EDGEC_STUB_REGISTRATION(Register_CALL_ONCE)
EDGEC_STUB_REGISTRATION(Register_CAST)
EDGEC_STUB_REGISTRATION(Register_CEIL)
EDGEC_STUB_REGISTRATION(Register_CONCATENATION)
EDGEC_STUB_REGISTRATION(Register_COS)
EDGEC_STUB_REGISTRATION(Register_CUMSUM)
EDGEC_STUB_REGISTRATION(Register_DEPTH_TO_SPACE)
EDGEC_STUB_REGISTRATION(Register_DEQUANTIZE)
EDGEC_STUB_REGISTRATION(Register_DIV)
EDGEC_STUB_REGISTRATION(Register_EMBEDDING_LOOKUP)
EDGEC_STUB_REGISTRATION(Register_ELU)
EDGEC_STUB_REGISTRATION(Register_EQUAL)
EDGEC_STUB_REGISTRATION(Register_EXP)
EDGEC_STUB_REGISTRATION(Register_EXPAND_DIMS)
EDGEC_STUB_REGISTRATION(Register_FILL)
EDGEC_STUB_REGISTRATION(Register_FLOOR)
EDGEC_STUB_REGISTRATION(Register_FLOOR_DIV)
EDGEC_STUB_REGISTRATION(Register_FLOOR_MOD)
EDGEC_STUB_REGISTRATION(Register_GATHER)
EDGEC_STUB_REGISTRATION(Register_GATHER_ND)
EDGEC_STUB_REGISTRATION(Register_GREATER)
EDGEC_STUB_REGISTRATION(Register_GREATER_EQUAL)
EDGEC_STUB_REGISTRATION(Register_HARD_SWISH)
EDGEC_STUB_REGISTRATION(Register_IF)
EDGEC_STUB_REGISTRATION(Register_L2_NORMALIZATION)
EDGEC_STUB_REGISTRATION(Register_L2_POOL_2D)
EDGEC_STUB_REGISTRATION(Register_LEAKY_RELU)
EDGEC_STUB_REGISTRATION(Register_LESS)
EDGEC_STUB_REGISTRATION(Register_LESS_EQUAL)
EDGEC_STUB_REGISTRATION(Register_LOG)
EDGEC_STUB_REGISTRATION(Register_LOGICAL_AND)
EDGEC_STUB_REGISTRATION(Register_LOGICAL_NOT)
EDGEC_STUB_REGISTRATION(Register_LOGICAL_OR)
EDGEC_STUB_REGISTRATION(Register_LOGISTIC)
EDGEC_STUB_REGISTRATION(Register_LOG_SOFTMAX)
EDGEC_STUB_REGISTRATION(Register_MIRROR_PAD)
EDGEC_STUB_REGISTRATION(Register_MEAN)
EDGEC_STUB_REGISTRATION(Register_NEG)
EDGEC_STUB_REGISTRATION(Register_NOT_EQUAL)
EDGEC_STUB_REGISTRATION(Register_PACK)
EDGEC_STUB_REGISTRATION(Register_PRELU)
EDGEC_STUB_REGISTRATION(Register_QUANTIZE)
EDGEC_STUB_REGISTRATION(Register_READ_VARIABLE)
EDGEC_STUB_REGISTRATION(Register_REDUCE_ALL)
EDGEC_STUB_REGISTRATION(Register_REDUCE_MAX)
EDGEC_STUB_REGISTRATION(Register_REDUCE_MIN)
EDGEC_STUB_REGISTRATION(Register_RELU)
EDGEC_STUB_REGISTRATION(Register_RELU6)
EDGEC_STUB_REGISTRATION(Register_RESHAPE)
EDGEC_STUB_REGISTRATION(Register_RESIZE_BILINEAR)
EDGEC_STUB_REGISTRATION(Register_REVERSE_V2)
EDGEC_STUB_REGISTRATION(Register_ROUND)
EDGEC_STUB_REGISTRATION(Register_RSQRT)
EDGEC_STUB_REGISTRATION(Register_SELECT_V2)
EDGEC_STUB_REGISTRATION(Register_SHAPE)
EDGEC_STUB_REGISTRATION(Register_SIN)
EDGEC_STUB_REGISTRATION(Register_SLICE)
EDGEC_STUB_REGISTRATION(Register_SPACE_TO_BATCH_ND)
EDGEC_STUB_REGISTRATION(Register_SPACE_TO_DEPTH)
EDGEC_STUB_REGISTRATION(Register_SPLIT)
EDGEC_STUB_REGISTRATION(Register_SPLIT_V)
EDGEC_STUB_REGISTRATION(Register_SQUEEZE)
EDGEC_STUB_REGISTRATION(Register_SQRT)
EDGEC_STUB_REGISTRATION(Register_SQUARE)
EDGEC_STUB_REGISTRATION(Register_SQUARED_DIFFERENCE)
EDGEC_STUB_REGISTRATION(Register_STRIDED_SLICE)
EDGEC_STUB_REGISTRATION(Register_SUB)
EDGEC_STUB_REGISTRATION(Register_SUM)
EDGEC_STUB_REGISTRATION(Register_TANH)
EDGEC_STUB_REGISTRATION(Register_UNPACK)
EDGEC_STUB_REGISTRATION(Register_VAR_HANDLE)
EDGEC_STUB_REGISTRATION(Register_WHILE)
EDGEC_STUB_REGISTRATION(Register_ZEROS_LIKE)

template <unsigned int tOpCount>
class MicroMutableOpResolver {
 public:
  // the registrations added, in order: a test prints them
  const char* names[tOpCount] = {};
  unsigned int count = 0;

  TfLiteStatus AddAbs(const TFLMRegistration& registration = Register_ABS()) {
    return Add(registration.name);
  }
  TfLiteStatus AddAdd(const TFLMRegistration& registration = Register_ADD()) {
    return Add(registration.name);
  }
  TfLiteStatus AddAddN(const TFLMRegistration& registration = Register_ADD_N()) {
    return Add(registration.name);
  }
  TfLiteStatus AddArgMax(const TFLMRegistration& registration = Register_ARG_MAX()) {
    return Add(registration.name);
  }
  TfLiteStatus AddArgMin(const TFLMRegistration& registration = Register_ARG_MIN()) {
    return Add(registration.name);
  }
  TfLiteStatus AddAssignVariable(const TFLMRegistration& registration = Register_ASSIGN_VARIABLE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddAveragePool2D(const TFLMRegistration& registration = Register_AVERAGE_POOL_2D()) {
    return Add(registration.name);
  }
  TfLiteStatus AddBatchMatMul(const TFLMRegistration& registration = Register_BATCH_MATMUL()) {
    return Add(registration.name);
  }
  TfLiteStatus AddBatchToSpaceNd(const TFLMRegistration& registration = Register_BATCH_TO_SPACE_ND()) {
    return Add(registration.name);
  }
  TfLiteStatus AddBroadcastArgs(const TFLMRegistration& registration = Register_BROADCAST_ARGS()) {
    return Add(registration.name);
  }
  TfLiteStatus AddBroadcastTo(const TFLMRegistration& registration = Register_BROADCAST_TO()) {
    return Add(registration.name);
  }
  TfLiteStatus AddCallOnce(const TFLMRegistration& registration = Register_CALL_ONCE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddCast(const TFLMRegistration& registration = Register_CAST()) {
    return Add(registration.name);
  }
  TfLiteStatus AddCeil(const TFLMRegistration& registration = Register_CEIL()) {
    return Add(registration.name);
  }
  TfLiteStatus AddConcatenation(const TFLMRegistration& registration = Register_CONCATENATION()) {
    return Add(registration.name);
  }
  TfLiteStatus AddConv2D(const TFLMRegistration& registration = Register_CONV_2D()) {
    return Add(registration.name);
  }
  TfLiteStatus AddCos(const TFLMRegistration& registration = Register_COS()) {
    return Add(registration.name);
  }
  TfLiteStatus AddCumSum(const TFLMRegistration& registration = Register_CUMSUM()) {
    return Add(registration.name);
  }
  TfLiteStatus AddDepthToSpace(const TFLMRegistration& registration = Register_DEPTH_TO_SPACE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddDepthwiseConv2D(const TFLMRegistration& registration = Register_DEPTHWISE_CONV_2D()) {
    return Add(registration.name);
  }
  TfLiteStatus AddDequantize(const TFLMRegistration& registration = Register_DEQUANTIZE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddDiv(const TFLMRegistration& registration = Register_DIV()) {
    return Add(registration.name);
  }
  TfLiteStatus AddEmbeddingLookup(const TFLMRegistration& registration = Register_EMBEDDING_LOOKUP()) {
    return Add(registration.name);
  }
  TfLiteStatus AddElu(const TFLMRegistration& registration = Register_ELU()) {
    return Add(registration.name);
  }
  TfLiteStatus AddEqual(const TFLMRegistration& registration = Register_EQUAL()) {
    return Add(registration.name);
  }
  TfLiteStatus AddExp(const TFLMRegistration& registration = Register_EXP()) {
    return Add(registration.name);
  }
  TfLiteStatus AddExpandDims(const TFLMRegistration& registration = Register_EXPAND_DIMS()) {
    return Add(registration.name);
  }
  TfLiteStatus AddFill(const TFLMRegistration& registration = Register_FILL()) {
    return Add(registration.name);
  }
  TfLiteStatus AddFloor(const TFLMRegistration& registration = Register_FLOOR()) {
    return Add(registration.name);
  }
  TfLiteStatus AddFloorDiv(const TFLMRegistration& registration = Register_FLOOR_DIV()) {
    return Add(registration.name);
  }
  TfLiteStatus AddFloorMod(const TFLMRegistration& registration = Register_FLOOR_MOD()) {
    return Add(registration.name);
  }
  TfLiteStatus AddFullyConnected(const TFLMRegistration& registration = Register_FULLY_CONNECTED()) {
    return Add(registration.name);
  }
  TfLiteStatus AddGather(const TFLMRegistration& registration = Register_GATHER()) {
    return Add(registration.name);
  }
  TfLiteStatus AddGatherNd(const TFLMRegistration& registration = Register_GATHER_ND()) {
    return Add(registration.name);
  }
  TfLiteStatus AddGreater(const TFLMRegistration& registration = Register_GREATER()) {
    return Add(registration.name);
  }
  TfLiteStatus AddGreaterEqual(const TFLMRegistration& registration = Register_GREATER_EQUAL()) {
    return Add(registration.name);
  }
  TfLiteStatus AddHardSwish(const TFLMRegistration& registration = Register_HARD_SWISH()) {
    return Add(registration.name);
  }
  TfLiteStatus AddIf(const TFLMRegistration& registration = Register_IF()) {
    return Add(registration.name);
  }
  TfLiteStatus AddL2Normalization(const TFLMRegistration& registration = Register_L2_NORMALIZATION()) {
    return Add(registration.name);
  }
  TfLiteStatus AddL2Pool2D(const TFLMRegistration& registration = Register_L2_POOL_2D()) {
    return Add(registration.name);
  }
  TfLiteStatus AddLeakyRelu(const TFLMRegistration& registration = Register_LEAKY_RELU()) {
    return Add(registration.name);
  }
  TfLiteStatus AddLess(const TFLMRegistration& registration = Register_LESS()) {
    return Add(registration.name);
  }
  TfLiteStatus AddLessEqual(const TFLMRegistration& registration = Register_LESS_EQUAL()) {
    return Add(registration.name);
  }
  TfLiteStatus AddLog(const TFLMRegistration& registration = Register_LOG()) {
    return Add(registration.name);
  }
  TfLiteStatus AddLogicalAnd(const TFLMRegistration& registration = Register_LOGICAL_AND()) {
    return Add(registration.name);
  }
  TfLiteStatus AddLogicalNot(const TFLMRegistration& registration = Register_LOGICAL_NOT()) {
    return Add(registration.name);
  }
  TfLiteStatus AddLogicalOr(const TFLMRegistration& registration = Register_LOGICAL_OR()) {
    return Add(registration.name);
  }
  TfLiteStatus AddLogistic(const TFLMRegistration& registration = Register_LOGISTIC()) {
    return Add(registration.name);
  }
  TfLiteStatus AddLogSoftmax(const TFLMRegistration& registration = Register_LOG_SOFTMAX()) {
    return Add(registration.name);
  }
  TfLiteStatus AddMaximum(const TFLMRegistration& registration = Register_MAXIMUM()) {
    return Add(registration.name);
  }
  TfLiteStatus AddMaxPool2D(const TFLMRegistration& registration = Register_MAX_POOL_2D()) {
    return Add(registration.name);
  }
  TfLiteStatus AddMirrorPad(const TFLMRegistration& registration = Register_MIRROR_PAD()) {
    return Add(registration.name);
  }
  TfLiteStatus AddMean(const TFLMRegistration& registration = Register_MEAN()) {
    return Add(registration.name);
  }
  TfLiteStatus AddMinimum(const TFLMRegistration& registration = Register_MINIMUM()) {
    return Add(registration.name);
  }
  TfLiteStatus AddMul(const TFLMRegistration& registration = Register_MUL()) {
    return Add(registration.name);
  }
  TfLiteStatus AddNeg(const TFLMRegistration& registration = Register_NEG()) {
    return Add(registration.name);
  }
  TfLiteStatus AddNotEqual(const TFLMRegistration& registration = Register_NOT_EQUAL()) {
    return Add(registration.name);
  }
  TfLiteStatus AddPack(const TFLMRegistration& registration = Register_PACK()) {
    return Add(registration.name);
  }
  TfLiteStatus AddPad(const TFLMRegistration& registration = Register_PAD()) {
    return Add(registration.name);
  }
  TfLiteStatus AddPadV2(const TFLMRegistration& registration = Register_PADV2()) {
    return Add(registration.name);
  }
  TfLiteStatus AddPrelu(const TFLMRegistration& registration = Register_PRELU()) {
    return Add(registration.name);
  }
  TfLiteStatus AddQuantize(const TFLMRegistration& registration = Register_QUANTIZE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddReadVariable(const TFLMRegistration& registration = Register_READ_VARIABLE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddReduceAll(const TFLMRegistration& registration = Register_REDUCE_ALL()) {
    return Add(registration.name);
  }
  TfLiteStatus AddReduceMax(const TFLMRegistration& registration = Register_REDUCE_MAX()) {
    return Add(registration.name);
  }
  TfLiteStatus AddReduceMin(const TFLMRegistration& registration = Register_REDUCE_MIN()) {
    return Add(registration.name);
  }
  TfLiteStatus AddRelu(const TFLMRegistration& registration = Register_RELU()) {
    return Add(registration.name);
  }
  TfLiteStatus AddRelu6(const TFLMRegistration& registration = Register_RELU6()) {
    return Add(registration.name);
  }
  TfLiteStatus AddReshape(const TFLMRegistration& registration = Register_RESHAPE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddResizeBilinear(const TFLMRegistration& registration = Register_RESIZE_BILINEAR()) {
    return Add(registration.name);
  }
  TfLiteStatus AddReverseV2(const TFLMRegistration& registration = Register_REVERSE_V2()) {
    return Add(registration.name);
  }
  TfLiteStatus AddRound(const TFLMRegistration& registration = Register_ROUND()) {
    return Add(registration.name);
  }
  TfLiteStatus AddRsqrt(const TFLMRegistration& registration = Register_RSQRT()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSelectV2(const TFLMRegistration& registration = Register_SELECT_V2()) {
    return Add(registration.name);
  }
  TfLiteStatus AddShape(const TFLMRegistration& registration = Register_SHAPE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSin(const TFLMRegistration& registration = Register_SIN()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSlice(const TFLMRegistration& registration = Register_SLICE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSoftmax(const TFLMRegistration& registration = Register_SOFTMAX()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSpaceToBatchNd(const TFLMRegistration& registration = Register_SPACE_TO_BATCH_ND()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSpaceToDepth(const TFLMRegistration& registration = Register_SPACE_TO_DEPTH()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSplit(const TFLMRegistration& registration = Register_SPLIT()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSplitV(const TFLMRegistration& registration = Register_SPLIT_V()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSqueeze(const TFLMRegistration& registration = Register_SQUEEZE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSqrt(const TFLMRegistration& registration = Register_SQRT()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSquare(const TFLMRegistration& registration = Register_SQUARE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSquaredDifference(const TFLMRegistration& registration = Register_SQUARED_DIFFERENCE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddStridedSlice(const TFLMRegistration& registration = Register_STRIDED_SLICE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSub(const TFLMRegistration& registration = Register_SUB()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSum(const TFLMRegistration& registration = Register_SUM()) {
    return Add(registration.name);
  }
  TfLiteStatus AddSvdf(const TFLMRegistration& registration = Register_SVDF()) {
    return Add(registration.name);
  }
  TfLiteStatus AddTanh(const TFLMRegistration& registration = Register_TANH()) {
    return Add(registration.name);
  }
  TfLiteStatus AddTransposeConv(const TFLMRegistration& registration = Register_TRANSPOSE_CONV()) {
    return Add(registration.name);
  }
  TfLiteStatus AddTranspose(const TFLMRegistration& registration = Register_TRANSPOSE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddUnpack(const TFLMRegistration& registration = Register_UNPACK()) {
    return Add(registration.name);
  }
  TfLiteStatus AddUnidirectionalSequenceLSTM(const TFLMRegistration& registration = Register_UNIDIRECTIONAL_SEQUENCE_LSTM()) {
    return Add(registration.name);
  }
  TfLiteStatus AddVarHandle(const TFLMRegistration& registration = Register_VAR_HANDLE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddWhile(const TFLMRegistration& registration = Register_WHILE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddZerosLike(const TFLMRegistration& registration = Register_ZEROS_LIKE()) {
    return Add(registration.name);
  }
  TfLiteStatus AddCircularBuffer() { return Add("AddCircularBuffer"); }
  TfLiteStatus AddDecode() { return Add("AddDecode"); }
  TfLiteStatus AddDelay() { return Add("AddDelay"); }
  TfLiteStatus AddDetectionPostprocess() { return Add("AddDetectionPostprocess"); }
  TfLiteStatus AddDynamicUpdateSlice() { return Add("AddDynamicUpdateSlice"); }
  TfLiteStatus AddEnergy() { return Add("AddEnergy"); }
  TfLiteStatus AddEthosU() { return Add("AddEthosU"); }
  TfLiteStatus AddFftAutoScale() { return Add("AddFftAutoScale"); }
  TfLiteStatus AddFilterBank() { return Add("AddFilterBank"); }
  TfLiteStatus AddFilterBankLog() { return Add("AddFilterBankLog"); }
  TfLiteStatus AddFilterBankSpectralSubtraction() { return Add("AddFilterBankSpectralSubtraction"); }
  TfLiteStatus AddFilterBankSquareRoot() { return Add("AddFilterBankSquareRoot"); }
  TfLiteStatus AddFramer() { return Add("AddFramer"); }
  TfLiteStatus AddIrfft() { return Add("AddIrfft"); }
  TfLiteStatus AddOverlapAdd() { return Add("AddOverlapAdd"); }
  TfLiteStatus AddPCAN() { return Add("AddPCAN"); }
  TfLiteStatus AddResizeNearestNeighbor() { return Add("AddResizeNearestNeighbor"); }
  TfLiteStatus AddRfft() { return Add("AddRfft"); }
  TfLiteStatus AddStacker() { return Add("AddStacker"); }
  TfLiteStatus AddWindow() { return Add("AddWindow"); }

 private:
  TfLiteStatus Add(const char* name) {
    if (count >= tOpCount) return kTfLiteError;
    names[count++] = name;
    return kTfLiteOk;
  }
};

}  // namespace tflite

#endif  // EDGEC_TFLM_STUB_MICRO_MUTABLE_OP_RESOLVER_H_

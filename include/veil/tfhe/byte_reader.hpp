// ByteReader now lives in coding.hpp, beside ByteWriter and the frame-header codec. This
// header remains only for src/tfhe/serialization.cpp, which includes it until its next
// change; include coding.hpp instead.
#pragma once

#include "veil/tfhe/coding.hpp"

// Loading must never allocate what a length field merely claims. allocation_watch.cpp (linked
// into the test executables that check it) replaces the global operator new: while a test
// sets g_watch_allocations, the largest request is recorded in g_largest_allocation, so that
// the test can assert that refusing a hostile header allocated nothing of the claimed size.
// (AlignedVector goes through aligned_alloc, not operator new: claims that reach it are made
// large enough, 2^57 bytes and up, that an allocation would surface as std::bad_alloc, which
// the tests reject as well.)
#pragma once

#include <cstddef>

extern thread_local bool g_watch_allocations;
extern thread_local std::size_t g_largest_allocation;

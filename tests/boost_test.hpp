// Boost.Test as the build has it: the compiled library (Debian's libboost-test-dev; CMake's
// Boost::unit_test_framework), or its header-only form where only Boost's headers are at hand
// (benchmarks/gpu.sh on a GPU machine without Debian's -dev packages defines
// SOUNDNET_BOOST_TEST_HEADER_ONLY).
#pragma once

#if defined(SOUNDNET_BOOST_TEST_HEADER_ONLY)
#include <boost/test/included/unit_test.hpp>
#else
#include <boost/test/unit_test.hpp>
#endif

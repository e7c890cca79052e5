// The thread count is process-wide (not OpenMP's per-OS-thread setting) with scoped per-thread overrides.
#include <gtest/gtest.h>

#include <thread>

#include "tessera/core/threading.h"

using namespace tessera;

TEST(Threading, ProcessWideCountReachesOtherThreads) {
  set_num_threads(0);
  const int all = num_threads();
  EXPECT_GE(all, 1);
  set_num_threads(3);
  int seen = 0;
  std::thread([&] { seen = num_threads(); }).join();
  EXPECT_EQ(seen, 3);
  set_num_threads(0);
  EXPECT_EQ(num_threads(), all);
}

TEST(Threading, ScopedOverrideStaysOnItsThread) {
  set_num_threads(2);
  {
    ScopedThreads one(1);
    EXPECT_EQ(num_threads(), 1);
    int other = 0;
    std::thread([&] { other = num_threads(); }).join();
    EXPECT_EQ(other, 2);
    {
      ScopedThreads none(0);  // no override: the one in force stays
      EXPECT_EQ(num_threads(), 1);
    }
  }
  EXPECT_EQ(num_threads(), 2);
  set_num_threads(0);
}

// Stopping long work: the front end decides how an interrupt is noticed (the CLI: a flag its signal
// handler sets; Python: pending signals), the library asks from its long loops and unwinds by throwing
// Interrupted. The library itself never installs signal handlers (the pattern of faiss's InterruptCallback).
#pragma once
#include <functional>

#include "tessera/core/error.h"

namespace tessera {

/// Long work was stopped because the front end's interrupt check said so. Derives from Error, so a
/// generic handler still catches it; front ends catch it first (Python: KeyboardInterrupt; CLI: 130/143).
class Interrupted : public Error {
 public:
  Interrupted() : Error("interrupted") {}
};

/// Returns true when the work in progress should stop. Called only from the thread that started the
/// work, outside parallel regions, at most about every 20 ms.
using InterruptCheck = std::function<bool()>;

/// Install the process-wide check (an empty function: none, the default). Not thread-safe against a
/// running job: install it once, before work starts.
void set_interrupt_check(InterruptCheck check);

/// Throw Interrupted if the installed check says so. Cheap enough to call from every iteration of a
/// loop whose iterations take microseconds: the check itself runs at most every 20 ms per thread.
/// Call it only outside OpenMP parallel regions (exceptions must not escape them).
void check_interrupt();

/// check_interrupt() ignoring the rate limit (for the last chance before an irreversible step).
void check_interrupt_now();

}  // namespace tessera

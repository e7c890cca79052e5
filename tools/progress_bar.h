// A progress bar on stderr for the CLI (the library reports through a callback; this draws it).
#pragma once
#include "tessera/core/progress.h"

namespace tessera::cli {

/// A ProgressFn that redraws one line on stderr; silent when `quiet`.
ProgressFn progress_bar(bool quiet);

}  // namespace tessera::cli

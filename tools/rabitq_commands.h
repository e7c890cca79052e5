// `tessera rabitq build|search|eval`: Extended RaBitQ IVF indexes from the command line. main() owns signals
// and error reporting; these only parse, validate, call the library and print.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>

namespace tessera::cli {

class RabitqCommands {
 public:
  /// Adds the `rabitq` subcommand and its three commands to app.
  explicit RabitqCommands(CLI::App& app);
  ~RabitqCommands();
  /// Run the parsed `rabitq` command; false when none was parsed. Throws tessera::Error on bad input.
  bool run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::cli

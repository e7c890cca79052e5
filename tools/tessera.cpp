// tessera command-line tool (placeholder until the sid subcommands land).
#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"tessera: vector quantization and semantic IDs"};
  app.require_subcommand(1);
  app.add_subcommand("version", "print the version")->callback([] { std::puts("tessera 0.1.0"); });
  CLI11_PARSE(app, argc, argv);
  return 0;
}

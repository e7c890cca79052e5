// What the commands (and both binaries, tessera and tessera-neural) share: signals, error detail, output
// checks, ground truth, recall, timing, result files.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tessera/core/matrix.h"

namespace tessera::cli {

/// SIGINT/SIGTERM only raise a flag that the library polls (set_interrupt_check), so work unwinds and outputs
/// are cleaned up; the handler resets itself, so a second signal ends the process at once.
void install_signal_handlers();
/// The signal that stopped the work (SIGINT when none was recorded).
int received_signal();
/// Whether errors also name where they were detected: the flag (--verbose) or TESSERA_VERBOSE=1.
bool verbose_errors(bool flag);

double seconds_since(std::chrono::steady_clock::time_point t0);

/// An output file must be writable before the work starts: not a directory, in a directory we can write.
void check_output_file(const std::string& path);

/// Vectors of an input file (read_vectors), non-empty and finite; `dim` > 0 demands that many columns.
FloatMatrix read_input(const std::string& path, const char* what, size_t dim = 0);

/// Ground truth: n_queries × (≥ 1) neighbour ids from .ivecs, an integer .npy, or an HDF5 file's
/// "neighbors" (ann-benchmarks; file.hdf5:NAME for another dataset). Ids must lie in [0, n_base).
CodeMatrix read_ground_truth(const std::string& path, size_t n_queries, size_t n_base);

/// Share of queries whose true nearest neighbour (gt column 0) is among the first r labels (faiss's
/// "1-recall@r").
double first_neighbour_recall(const std::vector<int64_t>& labels, size_t k, const CodeMatrix& gt, size_t r);
/// |first r labels ∩ first r true neighbours| / r, averaged over queries (ann-benchmarks' recall@r;
/// needs r ≤ gt.cols()).
double overlap_recall(const std::vector<int64_t>& labels, size_t k, const CodeMatrix& gt, size_t r);

/// Writes dir/labels.npy (nq × k int64) and dir/distances.npy (nq × k float32), both complete before
/// either is renamed into place; `also` runs before the renames (another output of the same command).
/// A directory this call created is removed again on failure.
void write_search_results(const std::string& dir, const std::vector<int64_t>& labels, const std::vector<float>& dists,
                          size_t nq, size_t k, const std::function<void()>& also = {});

}  // namespace tessera::cli

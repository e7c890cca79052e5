// Clustering: k-means (plain and size-constrained) and balanced assignment on a cost matrix.
#include "common.h"
#include "tessera/cluster/balanced_assignment.h"
#include "tessera/cluster/kmeans.h"

namespace tessera_py {

namespace {

/// (labels: n int32, total) of solve(cost view, bounds, labels) on cost: n × k, without the GIL.
template <class Solve>
py::tuple assign_on_costs(const py::object& cost, tessera::SizeBounds bounds, Solve&& solve) {
  F32In c = as_f32(cost, "cost", "n × k float32");
  py::array_t<int32_t> labels(py::ssize_t(c.view.rows));
  int32_t* out = labels.mutable_data();
  const double total = without_gil(nullptr, [&] {
    tessera::check_size_bounds(c.view.rows, c.view.cols, bounds);
    return solve(c.view, bounds, out);
  });
  return py::make_tuple(labels, total);
}

}  // namespace

void bind_cluster(py::module_& m) {
  py::class_<tessera::KMeansResult>(m, "KMeansResult", "The outcome of kmeans().")
      .def_property_readonly(
          "centroids", [](const tessera::KMeansResult& r) { return matrix_to_numpy(r.centroids, false); },
          "k × d float32 centroids.")
      .def_property_readonly(
          "labels",
          [](const tessera::KMeansResult& r) {
            return py::array_t<int32_t>(py::ssize_t(r.assignment.size()), r.assignment.data());
          },
          "Cluster of every training row (int32; all n rows, or the rows in sample_rows when subsampled).")
      .def_property_readonly(
          "sample_rows",
          [](const tessera::KMeansResult& r) -> py::object {
            if (r.sample_rows.empty()) return py::none();
            std::vector<int64_t> v(r.sample_rows.begin(), r.sample_rows.end());
            return vector_to_numpy(std::move(v));
          },
          "Rows of x used for training (int64, increasing) when max_train_points subsampled, else None.")
      .def_readonly("objective", &tessera::KMeansResult::objective,
                    "Sum of squared distances of the training rows to their assigned centroid.")
      .def_readonly("iterations", &tessera::KMeansResult::iterations,
                    "Lloyd iterations of the winning restart (on the warm-start sample and on all rows).")
      .def_readonly("warm_start_rows", &tessera::KMeansResult::warm_start_rows,
                    "Rows of the sample the restarts ran on (0: every iteration on all rows).")
      .def_readonly("best_init", &tessera::KMeansResult::best_init, "Index of the winning restart.")
      .def("__repr__", [](const tessera::KMeansResult& r) {
        return "KMeansResult(k=" + std::to_string(r.centroids.rows()) + ", d=" + std::to_string(r.centroids.cols()) +
               ", objective=" + std::to_string(r.objective) + ", iterations=" + std::to_string(r.iterations) + ")";
      });

  m.def(
      "kmeans",
      [](const py::object& x, size_t k, int max_iter, double tol, int n_init, const std::string& init, uint64_t seed,
         size_t max_train_points, const py::object& size_min, const py::object& size_max, bool balanced,
         bool sample_warm_start, const py::object& progress) {
        F32In in = as_f32(x, "x");
        tessera::KMeansParams p;
        p.k = k;
        p.max_iter = max_iter;
        p.tol = tol;
        p.n_init = n_init;
        p.init = tessera::parse_kmeans_init(init);
        p.seed = seed;
        p.max_train_points = max_train_points;
        p.sample_warm_start = sample_warm_start;
        const auto lo = opt_size(size_min), hi = opt_size(size_max);
        if (balanced || lo || hi) {
          const size_t n = in.view.rows, nt = max_train_points && max_train_points < n ? max_train_points : n;
          if (k == 0) throw_invalid("k must be at least 1");
          tessera::SizeBounds b = tessera::default_size_bounds(nt, k);
          if (lo) b.lo = *lo;
          if (hi) b.hi = *hi;
          p.size_bounds = b;
        }
        Progress prog(progress);
        p.progress = prog.fn();
        return without_gil(&prog, [&] {
          return tessera::kmeans(in.view, p);
        });
      },
      "x"_a, "k"_a, py::kw_only(), "max_iter"_a = 100, "tol"_a = 1e-4, "n_init"_a = 3, "init"_a = "auto",
      "seed"_a = 42, "max_train_points"_a = 0, "size_min"_a = py::none(), "size_max"_a = py::none(),
      "balanced"_a = false, "sample_warm_start"_a = true, "progress"_a = py::none(),
      "k-means (Lloyd) on x: n × d float32 into k clusters.\n\n"
      "init: 'auto' (plain k-means: k-means++ and progressive-dimension seeds race for 5 iterations, the\n"
      "lower objective goes on; balanced: k-means++), 'k-means++', 'random' or 'progressive'; n_init restarts\n"
      "(lowest objective wins); tol as scikit-learn;\n"
      "max_train_points > 0 trains on a uniform sample of that many rows. sample_warm_start: from 32·k\n"
      "training rows on, the restarts run on a sample of min(256·k, n/2) rows and the last quarter of the\n"
      "iterations (at least 4) of the best one on all rows; False: every iteration on all rows. balanced=True, or size_min /\n"
      "size_max, constrain every cluster's size (missing bounds default to max(1, n//k - 1), n//k + 1 for the\n"
      "n training rows). progress: callable(stage, done, total, value). Deterministic for a given seed at any\n"
      "thread count. Returns a KMeansResult (centroids k × d, labels, objective, iterations).");

  m.def(
      "default_size_bounds",
      [](size_t n, size_t k) {
        if (k == 0) throw_invalid("k must be at least 1");
        const auto b = tessera::default_size_bounds(n, k);
        return py::make_tuple(b.lo, b.hi);
      },
      "n"_a, "k"_a, "MiniOneRec's cluster size bounds for n points in k clusters: (max(1, n//k - 1), n//k + 1).");

  m.def(
      "balanced_assign",
      [](const py::object& cost, size_t size_min, size_t size_max) {
        return assign_on_costs(cost, {size_min, size_max}, [](auto c, tessera::SizeBounds b, int32_t* out) {
          return tessera::BalancedAssigner(b).assign_costs(c, out);
        });
      },
      "cost"_a, "size_min"_a, "size_max"_a,
      "Size-constrained assignment on a dense cost matrix (cost: n × k): every point gets one cluster, every\n"
      "cluster's size lies in [size_min, size_max], the total cost is minimal (the scalable solver used inside\n"
      "balanced k-means). Returns (labels: n int32, total cost).");
  m.def(
      "balanced_assign_exact",
      [](const py::object& cost, size_t size_min, size_t size_max) {
        return assign_on_costs(cost, {size_min, size_max}, [](auto c, tessera::SizeBounds b, int32_t* out) {
          return tessera::balanced_assign_exact(c, b, out);
        });
      },
      "cost"_a, "size_min"_a, "size_max"_a,
      "The exact reference for balanced_assign (min-cost flow; memory and time grow with n·k).\n"
      "cost: n × k. Returns (labels: n int32, total cost).");
}

}  // namespace tessera_py

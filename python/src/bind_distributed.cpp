// The chunk kernels and the central solver behind tessera.distributed (semantic IDs on Dask): what a worker
// computes on its block of rows (squared distances, the greedy-or-balanced assignment pieces), what the client
// solves on the few items near a price boundary (the sparse per-cluster-window balanced assignment), and the
// helpers that make a distributed run give exactly the single-process result (the training-sample rows, the
// sample's prices, the collision `reassign` step, index.json text for a block of rows). The GIL is released
// around every kernel, so Dask's worker threads run them in parallel.
#include <string>
#include <vector>

#include "common.h"
#include "tessera/cluster/balanced_assignment.h"
#include "tessera/cluster/candidate_lists.h"
#include "tessera/cluster/sparse_balanced_assignment.h"
#include "tessera/core/distances.h"
#include "tessera/core/rng.h"
#include "tessera/sid/collisions.h"
#include "tessera/sid/index_json.h"

namespace tessera_py {

namespace {

template <class T>
py::array_t<T, py::array::c_style | py::array::forcecast> as_1d(const py::object& o, const char* name) {
  auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(o);
  if (!a || a.ndim() != 1) throw_invalid(std::string(name) + " must be a 1-D array");
  return a;
}

// (rows × width) reshaped view of a 1-D vector, as numpy.
template <class T>
py::array rows_of(std::vector<T> v, size_t rows, size_t width) {
  return vector_to_numpy(std::move(v)).attr("reshape")(py::ssize_t(rows), py::ssize_t(width));
}

// A per-cluster vector (k values).
std::vector<double> as_prices(const py::object& o, size_t k, const char* name = "prices") {
  auto a = as_1d<double>(o, name);
  if (size_t(a.size()) != k)
    throw_invalid(std::string(name) + " must hold k = " + std::to_string(k) + " values, got " + std::to_string(a.size()));
  return std::vector<double>(a.data(), a.data() + a.size());
}

}  // namespace

void bind_distributed(py::module_& m) {
  m.def(
      "sid_training_rows",
      [](size_t n, size_t train_sample, uint64_t seed) {
        std::vector<size_t> rows = tessera::sample_rows(n, train_sample, tessera::derive_seed(seed, 0x7a1u));
        return vector_to_numpy(std::vector<int64_t>(rows.begin(), rows.end()));
      },
      "n"_a, "train_sample"_a, "seed"_a,
      "The rows (ascending int64) build_semantic_ids(..., train_sample=S, seed=seed) trains the codebooks on\n"
      "for n items: the same uniform sample, so that a distributed build trains identical codebooks.");

  m.def(
      "squared_distances",
      [](const py::object& x, const py::object& centroids) {
        F32In xi = as_f32(x, "x"), ci = as_f32(centroids, "centroids", "k × d float32");
        if (xi.view.cols != ci.view.cols)
          throw_invalid("dimension mismatch: x has " + std::to_string(xi.view.cols) + " columns, centroids " +
                        std::to_string(ci.view.cols));
        tessera::FloatMatrix out(xi.view.rows, ci.view.rows);
        without_gil(nullptr, [&] {
          if (xi.view.rows) tessera::l2_sqr_distances(xi.view, ci.view, nullptr, out.data());
        });
        return matrix_to_numpy(std::move(out));
      },
      "x"_a, "centroids"_a,
      "Squared L2 distances of x (n × d float32) to centroids (k × d): n × k float32, computed exactly as the\n"
      "balanced assignment inside build_semantic_ids computes its costs (one GEMM with norms), so a block of\n"
      "rows gets the same values as the whole matrix would.");

  m.def(
      "balanced_assign_with_prices",
      [](const py::object& x, const py::object& centroids, size_t size_min, size_t size_max) {
        F32In xi = as_f32(x, "x"), ci = as_f32(centroids, "centroids", "k × d float32");
        py::array_t<int32_t> labels{py::ssize_t(xi.view.rows)};
        int32_t* out = labels.mutable_data();
        std::vector<double> prices = without_gil(nullptr, [&] {
          tessera::BalancedAssigner a({size_min, size_max});
          a.assign(xi.view, ci.view, out, nullptr);
          return a.prices();
        });
        return py::make_tuple(labels, vector_to_numpy(std::move(prices)));
      },
      "x"_a, "centroids"_a, "size_min"_a, "size_max"_a,
      "Exact balanced assignment of x (n × d) to centroids (k × d), squared L2, sizes in [size_min, size_max],\n"
      "with the cluster prices that certify it. Returns (labels: n int32, prices: k float64); a sample's\n"
      "prices are the warm start of the distributed assignment of all rows (prices do not grow with n).");

  m.def(
      "candidate_lists",
      [](const py::object& x, const py::object& centroids, const py::object& prices, size_t width,
         const py::object& join_limit) {
        F32In xi = as_f32(x, "x"), ci = as_f32(centroids, "centroids", "k × d float32");
        if (xi.view.cols != ci.view.cols)
          throw_invalid("dimension mismatch: x has " + std::to_string(xi.view.cols) + " columns, centroids " +
                        std::to_string(ci.view.cols));
        const size_t k = ci.view.rows;
        const std::vector<double> p = as_prices(prices, k);
        std::vector<float> limits;
        if (!join_limit.is_none()) {
          const std::vector<double> l = as_prices(join_limit, k, "join_limit");
          limits.assign(l.begin(), l.end());
        }
        tessera::CandidateLists l =
            without_gil(nullptr, [&] { return tessera::make_candidate_lists(xi.view, ci.view, p, width, limits); });
        return py::make_tuple(vector_to_numpy(std::move(l.offsets)), vector_to_numpy(std::move(l.cluster)),
                              vector_to_numpy(std::move(l.cost)), vector_to_numpy(std::move(l.theta)));
      },
      "x"_a, "centroids"_a, "prices"_a, "width"_a, "join_limit"_a = py::none(),
      "Candidate lists of x against centroids under prices (k float64), in compressed rows: (offsets n + 1\n"
      "int64; clusters, costs: row i's arcs at offsets[i]:offsets[i+1], first its `width` cheapest priced\n"
      "clusters in order, then every other cluster j within join_limit[j] (k values, optional) of its cheapest;\n"
      "theta n float32: the (width+1)-th cheapest priced cost, +inf when width = k). Under prices p no unlisted\n"
      "cluster costs less than theta + min(p − prices). The costs are squared_distances' values.");

  m.def(
      "scan_candidate_lists",
      [](const py::object& offsets, const py::object& clusters, const py::object& costs, size_t k,
         const py::object& prices, size_t top, double margin, const py::object& own_margin,
         const py::object& join_margin) {
        auto off = as_1d<int64_t>(offsets, "offsets");
        auto ids = as_1d<int32_t>(clusters, "clusters");
        auto co = as_1d<float>(costs, "costs");
        if (off.size() < 1) throw_invalid("offsets must hold n + 1 values (offsets[0] = 0)");
        const size_t n = size_t(off.size() - 1);
        if (ids.size() != co.size() || off.at(n) != ids.size())
          throw_invalid("offsets, clusters and costs must describe the same compressed lists");
        const std::vector<double> p = as_prices(prices, k);
        std::vector<double> own, join;
        tessera::ListScanParams prm;
        prm.top = top, prm.margin = margin;
        if (!own_margin.is_none()) own = as_prices(own_margin, k, "own_margin"), prm.own_margin = own.data();
        if (!join_margin.is_none()) join = as_prices(join_margin, k, "join_margin"), prm.join_margin = join.data();
        const tessera::CandidateListsView v{n, k, off.data(), ids.data(), co.data()};
        tessera::ListScan s = without_gil(nullptr, [&] { return tessera::scan_candidate_lists(v, p, prm); });
        py::dict out;
        out["counts"] = vector_to_numpy(std::move(s.counts));
        out["fixed"] = vector_to_numpy(std::move(s.fixed));
        out["gaps"] = rows_of(std::move(s.gaps), k, s.top);
        out["joins"] = rows_of(std::move(s.joins), k, s.top);
        out["join_rows"] = rows_of(std::move(s.join_row), k, s.top);
        out["join_cost"] = rows_of(std::move(s.join_cost), k, s.top);
        out["join_own"] = rows_of(std::move(s.join_own), k, s.top);
        out["join_ownd"] = rows_of(std::move(s.join_own_cost), k, s.top);
        out["boundary"] = vector_to_numpy(std::move(s.boundary));
        return out;
      },
      "offsets"_a, "clusters"_a, "costs"_a, "k"_a, "prices"_a, "top"_a, "margin"_a,
      "own_margin"_a = py::none(), "join_margin"_a = py::none(),
      "One pass over candidate lists (candidate_lists' output) under prices: every row at its cheapest listed\n"
      "cluster; per cluster the counts, the counts of non-boundary rows ('fixed'), the `top` smallest member\n"
      "gaps and joining costs (with the joiners' rows, costs, own clusters and own costs; k × top, ascending,\n"
      "+inf / -1 padded), and the boundary rows (conservative gap ≤ max(margin, own_margin[cluster]), or a\n"
      "joining cost ≤ join_margin[cluster]); unlisted clusters are not looked at.");

  m.def(
      "balanced_assign_sparse",
      [](const py::object& offsets, const py::object& clusters, const py::object& costs, size_t k,
         const py::object& size_min, const py::object& size_max, const py::object& start_prices) -> py::tuple {
        auto off = as_1d<int64_t>(offsets, "offsets");
        auto cl = as_1d<int32_t>(clusters, "clusters");
        auto co = as_1d<float>(costs, "costs");
        auto lo = as_1d<int64_t>(size_min, "size_min"), hi = as_1d<int64_t>(size_max, "size_max");
        if (off.size() < 1) throw_invalid("offsets must hold n + 1 values (offsets[0] = 0)");
        const size_t n = size_t(off.size() - 1);
        if (cl.size() != co.size() || (n > 0 && off.at(n) != cl.size()))
          throw_invalid("clusters and costs must hold offsets[n] = " + std::to_string(off.at(n)) + " arcs, got " +
                        std::to_string(cl.size()) + " and " + std::to_string(co.size()));
        if (size_t(lo.size()) != k || size_t(hi.size()) != k)
          throw_invalid("size_min and size_max must hold k = " + std::to_string(k) + " values");
        std::vector<size_t> l(k), h(k);
        for (size_t j = 0; j < k; ++j) {
          if (lo.at(j) < 0 || hi.at(j) < 0) throw_invalid("cluster " + std::to_string(j) + " has a negative bound");
          l[j] = size_t(lo.at(j));
          h[j] = size_t(hi.at(j));
        }
        py::array_t<int32_t> labels{py::ssize_t(n)};
        tessera::SparseCostsView v{n, k, off.data(), cl.data(), co.data()};
        int32_t* out = labels.mutable_data();
        std::vector<double> start;
        if (!start_prices.is_none()) start = as_prices(start_prices, k, "start_prices");
        tessera::SparseBalancedResult r =
            without_gil(nullptr, [&] { return tessera::balanced_assign_sparse_exact(v, l, h, out, start); });
        if (!r.feasible) return py::tuple(py::make_tuple(false, py::none(), py::none(), py::none()));
        return py::tuple(py::make_tuple(true, labels, vector_to_numpy(std::move(r.prices)), r.cost));
      },
      "offsets"_a, "clusters"_a, "costs"_a, "k"_a, "size_min"_a, "size_max"_a, "start_prices"_a = py::none(),
      "Exact size-constrained assignment over sparse candidate arcs with one size window per cluster.\n"
      "Item i may join clusters[offsets[i]:offsets[i+1]] at costs[...] (offsets: n + 1 int64, clusters int32,\n"
      "costs float32); cluster j must get between size_min[j] and size_max[j] items (k values each). Returns\n"
      "(feasible, labels: n int32, prices: k float64, total cost); (False, None, None, None) when no assignment\n"
      "over the listed arcs meets the windows. The prices certify the optimum: each item is in a listed cluster\n"
      "minimising cost + price, price > 0 only at size_max, < 0 only at size_min (successive shortest paths on\n"
      "the k-cluster graph from start_prices, k float64, default zeros; memory and time grow with the arcs and\n"
      "k², not with n·k).");

  m.def(
      "reassign_last_level",
      [](const py::object& codes, const py::object& residual, const py::object& last_codebook) {
        I32In c = as_i32(codes, "codes", "n × L int32");
        F32In r = as_f32(residual, "residual"), b = as_f32(last_codebook, "last_codebook", "K × d float32");
        tessera::CodeMatrix moved(c.view.rows, c.view.cols);
        std::copy(c.view.data, c.view.data + c.view.rows * c.view.cols, moved.data());
        const auto rep = without_gil(nullptr, [&] {
          return tessera::reassign_last_level(moved.view(), r.view, b.view);
        });
        return py::make_tuple(matrix_to_numpy(std::move(moved)), rep.moved, rep.unresolved);
      },
      "codes"_a, "residual"_a, "last_codebook"_a,
      "The `reassign` collision strategy of build_semantic_ids on a set of items (codes n × L; residual n × d:\n"
      "what enters the last level; last_codebook K × d): within each prefix group, all but the nearest member\n"
      "of each shared code move, in row order, to the nearest free last-level code. Returns (codes, moved,\n"
      "unresolved). Groups are independent, so any union of whole prefix groups gives the same result.");

  m.def(
      "index_json_fragment",
      [](const py::object& ids, size_t levels, bool zero_based, size_t first_row) {
        I32In in = as_i32(ids, "ids", "n × W int32, -1 = no token");
        std::vector<std::string> keys(in.view.rows);
        for (size_t i = 0; i < keys.size(); ++i) keys[i] = std::to_string(first_row + i);
        std::string s = without_gil(nullptr, [&] {
          tessera::TokenFormat f;
          f.zero_based = zero_based;
          return tessera::index_json(in.view, levels, f, &keys);
        });
        // "{\n  <entries>\n}" → "  <entries>": pieces join with ",\n" into one index.json.
        if (s.size() >= 4 && s.front() == '{' && s.compare(s.size() - 2, 2, "\n}") == 0) s = s.substr(2, s.size() - 4);
        else s.clear();
        return py::bytes(s);
      },
      "ids"_a, "levels"_a, "zero_based"_a, "first_row"_a,
      "The entries of index.json for a block of rows (ids: n × W, keys first_row .. first_row + n - 1) without\n"
      "the enclosing braces, as bytes: '{\\n' + b',\\n'.join(fragments) + '\\n}' is the file build_semantic_ids\n"
      "writes.");
}

}  // namespace tessera_py

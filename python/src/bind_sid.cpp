// Semantic IDs: build (train + resolve collisions), encode new items, collision statistics, output files.
#include <memory>
#include <string>

#include "bind_quant.h"
#include "bind_sid.h"
#include "tessera/core/threading.h"
#include "tessera/sid/collisions.h"
#include "tessera/sid/index_json.h"
#include "tessera/sid/pipeline.h"

namespace tessera_py {

namespace {

PyRQ& model_of(PySids& s) { return s.model.cast<PyRQ&>(); }

std::string sids_index_json(PySids& s, const py::object& keys) {
  auto k = opt_strings(keys, "keys", s.s.ids.rows());
  return without_gil(nullptr, [&] {
    return tessera::index_json(s.s.ids.view(), s.s.codes.cols(), s.s.format, k ? &*k : nullptr);
  });
}

tessera::Dedup parse_dedup(std::string s) {
  if (s == "append_all") s = "append-all";
  return tessera::parse_dedup(s);
}

}  // namespace

void bind_sid(py::module_& m) {
  m.def(
      "collision_stats",
      [](const py::object& codes) {
        I32In c = as_i32(codes, "codes", "n × L int32, -1 = no token");
        const auto st = without_gil(nullptr, [&] { return tessera::collision_stats(c.view); });
        return py::dict("unique_ids"_a = st.unique_ids, "collision_rate"_a = st.collision_rate,
                        "largest_group"_a = st.largest_group, "colliding_items"_a = st.colliding_items);
      },
      "codes"_a,
      "Collision statistics of the tuples formed by the non-negative entries of each row of codes (n × L):\n"
      "{'unique_ids', 'collision_rate' (1 - unique/n), 'largest_group', 'colliding_items'}.");

  py::class_<PySids>(m, "SemanticIds", "Semantic IDs of n items: codes, resolved token ids, the model and metrics.")
      .def_property_readonly(
          "codes", [](PySids& s) { return matrix_to_numpy(s.s.codes, false); },
          "n × L int32 level codes (0-based) before collision resolution (read-only view).")
      .def_property_readonly(
          "ids", [](PySids& s) { return matrix_to_numpy(s.s.ids, false); },
          "n × W int32 resolved ids: W = L, or L + 1 with a collision suffix; -1 = no token (read-only view).")
      .def_property_readonly(
          "model", [](PySids& s) { return s.model; }, "The trained ResidualQuantizer.")
      .def_property_readonly(
          "metrics", [](PySids& s) { return json_loads(s.s.metrics.to_json()); },
          "Quality figures (a dict, the content of metrics.json).")
      .def_property_readonly(
          "dedup", [](PySids& s) { return std::string(tessera::dedup_name(s.s.dedup)); }, "Collision strategy used.")
      .def_property_readonly(
          "zero_based", [](PySids& s) { return s.s.format.zero_based; }, "Whether level tokens are 0-based.")
      .def(
          "index_json", [](PySids& s, const py::object& keys) { return sids_index_json(s, keys); },
          "keys"_a = py::none(),
          "The MiniOneRec index.json text: {\"<key>\": [\"<a_N>\", \"<b_N>\", ...], ...}; keys: n item ids\n"
          "(default \"0\"..\"n-1\").")
      .def(
          "tokens", [](PySids& s, const py::object& keys) { return json_loads(sids_index_json(s, keys)); },
          "keys"_a = py::none(), "dict[str, list[str]]: exactly what index.json holds.")
      .def(
          "save",
          [](PySids& s, const py::object& out_dir, const py::object& keys, bool with_model) {
            const std::string dir = path_str(out_dir);
            auto k = opt_strings(keys, "keys", s.s.ids.rows());
            PyRQ& r = model_of(s);
            read_locked(r, [&] { tessera::write_semantic_ids(dir, s.s, k ? &*k : nullptr, with_model); });
          },
          "out_dir"_a, "keys"_a = py::none(), "with_model"_a = true,
          "Write index.json, codes.npy, metrics.json and (with_model) codebooks.npz and model.tsq into\n"
          "out_dir (created if needed), each atomically — the same files as the command-line tool.")
      .def("__len__", [](PySids& s) { return s.s.ids.rows(); })
      .def("__repr__", [](PySids& s) {
        return "SemanticIds(n=" + std::to_string(s.s.ids.rows()) + ", levels=" + std::to_string(s.s.codes.cols()) +
               ", width=" + std::to_string(s.s.ids.cols()) + ", dedup='" + tessera::dedup_name(s.s.dedup) + "')";
      });

  m.def(
      "build_semantic_ids",
      [](const py::object& x, size_t levels, size_t codebook_size, const py::object& codebook_sizes, bool balance,
         const std::string& dedup, uint64_t seed, int n_init, const std::string& init, int max_iter, double tol,
         const py::object& size_min,
         const py::object& size_max, size_t train_sample, bool sample_warm_start, bool zero_based,
         const py::object& labels,
         const py::object& progress, const py::object& threads) {
        F32In in = as_f32(x, "x");
        tessera::SidParams p;
        if (codebook_sizes.is_none())
          p.codebook_sizes.assign(levels, codebook_size);
        else
          p.codebook_sizes = codebook_sizes.cast<std::vector<size_t>>();
        for (size_t k : p.codebook_sizes)
          if (k == 0) throw_invalid("every codebook size must be at least 1");
        p.balance = balance;
        p.size_min = opt_size(size_min);
        p.size_max = opt_size(size_max);
        p.dedup = parse_dedup(dedup);
        p.format.zero_based = zero_based;
        p.seed = seed;
        p.n_init = n_init;
        p.init = tessera::parse_kmeans_init(init);
        p.max_iter = max_iter;
        p.tol = tol;
        p.train_sample = train_sample;
        p.sample_warm_start = sample_warm_start;
        auto lab = opt_strings(labels, "labels", in.view.rows);
        const int nthreads = threads.is_none() ? 0 : threads.cast<int>();
        Progress prog(progress);
        p.progress = prog.fn();
        auto s = std::make_unique<PySids>();
        s->s = without_gil(&prog, [&] {
          tessera::ScopedThreads scoped(nthreads);
          return tessera::build_semantic_ids(in.view, p, lab ? &*lab : nullptr);
        });
        s->s.model->params().progress = nullptr;
        s->model = py::cast(std::make_unique<PyRQ>(s->s.model));
        return s;
      },
      "x"_a, py::kw_only(), "levels"_a = 3, "codebook_size"_a = 256, "codebook_sizes"_a = py::none(),
      "balance"_a = true, "dedup"_a = "append", "seed"_a = 42, "n_init"_a = 3, "init"_a = "auto", "max_iter"_a = 100, "tol"_a = 1e-4,
      "size_min"_a = py::none(), "size_max"_a = py::none(), "train_sample"_a = 0, "sample_warm_start"_a = true,
      "zero_based"_a = false,
      "labels"_a = py::none(), "progress"_a = py::none(), "threads"_a = py::none(),
      "Train (balanced) RQ-KMeans on x: n × d float32 and give every item a unique semantic ID.\n\n"
      "levels × codebook_size codes, or codebook_sizes=[K_0, K_1, ...]. balance: size-constrained levels\n"
      "(bounds size_min/size_max, default max(1, n//K - 1), n//K + 1). dedup: 'append' (MiniOneRec),\n"
      "'append-all' (TIGER), 'reassign' or 'none'. sample_warm_start: as in kmeans(). zero_based: 0-based level tokens (default 1-based,\n"
      "as MiniOneRec's rqkmeans scripts). labels: n categories for purity metrics. threads: thread count for\n"
      "this call. Same seed → same codes at any thread count. Returns SemanticIds.");

  m.def(
      "encode_semantic_ids",
      [](const py::object& model, const py::object& x, const py::object& dedup, const py::object& zero_based,
         const py::object& labels, const py::object& threads) {
        py::object model_obj;
        tessera::Dedup d = tessera::Dedup::append;
        tessera::TokenFormat fmt;
        if (py::isinstance<PyRQ>(model)) {
          model_obj = model;
        } else {
          const std::string p = path_str(model);
          tessera::SidModel sm = without_gil(nullptr, [&] { return tessera::load_sid_model(p); });
          d = sm.dedup;
          fmt = sm.format;
          model_obj = py::cast(std::make_unique<PyRQ>(sm.model));
        }
        PyRQ& r = model_obj.cast<PyRQ&>();
        r.require_trained("encode_semantic_ids");
        if (!dedup.is_none()) d = parse_dedup(dedup.cast<std::string>());
        if (!zero_based.is_none()) fmt.zero_based = zero_based.cast<bool>();
        F32In in = check_dim(r, x, "x");
        auto lab = opt_strings(labels, "labels", in.view.rows);
        const int nthreads = threads.is_none() ? 0 : threads.cast<int>();
        auto s = std::make_unique<PySids>();
        s->s = read_locked(r, [&] {
          tessera::ScopedThreads scoped(nthreads);
          return tessera::encode_semantic_ids(r.q, in.view, d, fmt, lab ? &*lab : nullptr);
        });
        s->model = model_obj;
        return s;
      },
      "model"_a, "x"_a, py::kw_only(), "dedup"_a = py::none(), "zero_based"_a = py::none(), "labels"_a = py::none(),
      "threads"_a = py::none(),
      "Semantic IDs for new items x: n × d with a trained model (a ResidualQuantizer, or the path of a\n"
      "model.tsq, whose stored dedup and token format are the defaults): greedy residual codes resolved with\n"
      "dedup ('append' unless the model file says otherwise). Returns SemanticIds.");
}

}  // namespace tessera_py

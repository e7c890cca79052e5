// Extended RaBitQ: tessera.IVFRaBitQ (an IVF index of RaBitQ codes; nlist = 1 is the flat case).
#include <mutex>
#include <shared_mutex>

#include "bind_quant.h"
#include "bind_rabitq.h"
#include "common.h"
#include "tessera/index/index_ivf_rabitq.h"

namespace tessera_py {

namespace {

using tessera::IndexIVFRaBitQ;

// The index and a lock: add/train exclusive, search shared (the GIL is released around both).
struct PyIVFRaBitQ {
  std::unique_ptr<IndexIVFRaBitQ> index;
  mutable std::shared_mutex lock;
  template <bool Exclusive, class F>
  auto locked(F&& f) const {
    return without_gil(nullptr, [&] {
      if constexpr (Exclusive) {
        std::unique_lock guard(lock);
        return f();
      } else {
        std::shared_lock guard(lock);
        return f();
      }
    });
  }
};

// n list ids in [0, nlist) from a 1-D integer array.
std::vector<int32_t> list_ids(const py::object& obj, size_t n, size_t nlist) {
  py::array a = py::array::ensure(obj);
  if (!a || a.ndim() != 1 || size_t(a.size()) != n)
    throw_invalid("lists must be a 1-D array of " + std::to_string(n) + " list ids (one per row of x)");
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u') throw_invalid("lists must hold integers (list ids), not dtype " +
                                                std::string(py::str(a.dtype())));
  auto v = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  std::vector<int32_t> out(n);
  const int64_t* p = v.data();
  for (size_t i = 0; i < n; ++i) {
    if (p[i] < 0 || uint64_t(p[i]) >= nlist)
      throw_invalid("lists[" + std::to_string(i) + "] = " + std::to_string(p[i]) + " is outside 0.." +
                    std::to_string(nlist - 1));
    out[i] = int32_t(p[i]);
  }
  return out;
}

// The labels given to add(): a 1-D integer array of n values (≥ 0: checked by the index).
std::vector<int64_t> row_ids(const py::object& obj, size_t n) {
  py::array a = py::array::ensure(obj);
  if (!a || a.ndim() != 1 || size_t(a.size()) != n)
    throw_invalid("ids must be a 1-D array of " + std::to_string(n) + " integers (one per row of x)");
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw_invalid("ids must hold integers, not dtype " + std::string(py::str(a.dtype())));
  auto v = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  return std::vector<int64_t>(v.data(), v.data() + n);
}

}  // namespace

tessera::RabitqParams rabitq_params(int bits, const std::string& metric, const std::string& rotation,
                                    bool fast_quantization, double epsilon0, uint64_t seed) {
  tessera::RabitqParams p;
  p.bits = bits;
  p.metric = tessera::parse_metric(metric, /*allow_cosine=*/true);
  p.rotation = tessera::parse_rotation_kind(rotation);
  p.fast_quantization = fast_quantization;
  p.epsilon0 = epsilon0;
  p.seed = seed;
  return p;
}

void bind_rabitq(py::module_& m) {
  using R = PyIVFRaBitQ;
  py::class_<R>(m, "IVFRaBitQ",
                "An IVF index of Extended RaBitQ codes (Gao et al., SIGMOD 2025): coarse k-means lists, every vector\n"
                "coded against its list's centroid with `bits` bits per coordinate (Algorithm 1, exact), queries\n"
                "scanning the nprobe nearest lists with RaBitQ's unbiased distance estimates. nlist=1 is a flat\n"
                "index. metric: 'l2' (squared distances, ascending), 'ip' (inner products, descending) or 'cosine'\n"
                "(cosine similarities in [-1, 1], descending: vectors and queries are scaled to unit norm, the lists\n"
                "are k-means of the unit vectors, then it is 'ip' on those; a zero vector or query has cosine 0).")
      .def(py::init([](py::ssize_t d, py::ssize_t nlist, int bits, const std::string& metric,
                       const std::string& rotation, bool fast_quantization, double epsilon0, uint64_t seed,
                       bool keep_vectors) {
             if (d < 1) throw_invalid("d must be at least 1, got " + std::to_string(d));
             if (nlist < 1) throw_invalid("nlist must be at least 1, got " + std::to_string(nlist));
             auto r = std::make_unique<R>();
             r->index = std::make_unique<IndexIVFRaBitQ>(
                 size_t(d), size_t(nlist),
                 rabitq_params(bits, metric, rotation, fast_quantization, epsilon0, seed),
                 keep_vectors);
             return r;
           }),
           "d"_a, "nlist"_a, "bits"_a = 4, "metric"_a = "l2", "rotation"_a = "hadamard", "fast_quantization"_a = false,
           "epsilon0"_a = 1.9, "seed"_a = 0x12345, "keep_vectors"_a = true,
           "bits: 1..9 per coordinate. rotation: 'hadamard' (O(d log d), any d) or 'dense' (Haar, d² floats).\n"
           "fast_quantization: a constant rescale factor instead of the exact code search. epsilon0: width of the\n"
           "error bound (1.9: about 94% coverage). seed: draws the rotation. keep_vectors: also store the raw\n"
           "float32 vectors (4·d bytes each, saved with the index), which search(rerank=R) needs.")
      .def(
          "train",
          [](R& r, const py::object& x) {
            F32In in = check_dim(r.index->dim(), x, "x");
            r.locked<true>([&] { r.index->train(in.view); });
          },
          "x"_a,
          "Coarse k-means on x (n × d, n ≥ nlist; at most 256·nlist sampled rows; cosine: the unit vectors of\n"
          "the nonzero rows) and the rotation.")
      .def(
          "set_centroids",
          [](R& r, const py::object& c) {
            F32In in = check_dim(r.index->dim(), c, "centroids");
            r.locked<true>([&] { r.index->set_centroids(in.view); });
          },
          "centroids"_a, "Use these coarse centroids (nlist × d) instead of training: rows go to their nearest.")
      .def(
          "add",
          [](R& r, const py::object& x, const py::object& lists, const py::object& ids) {
            F32In in = check_dim(r.index->dim(), x, "x");
            std::vector<int32_t> l;
            if (!lists.is_none()) l = list_ids(lists, in.view.rows, r.index->nlist());
            const int32_t* lp = lists.is_none() ? nullptr : l.data();
            if (!ids.is_none()) {
              const std::vector<int64_t> labels = row_ids(ids, in.view.rows);
              r.locked<true>([&] { r.index->add_with_ids(in.view, labels.data(), lp); });
            } else if (lp) {
              r.locked<true>([&] { r.index->add(in.view, lp); });
            } else {
              r.locked<true>([&] { r.index->add(in.view); });
            }
          },
          "x"_a, "lists"_a = py::none(), "ids"_a = py::none(),
          "Code and store x (n × d). ids (optional, n integers ≥ 0, repeats allowed): the labels search returns\n"
          "for these rows; without them labels continue from ntotal. lists (optional, n integers in [0, nlist)):\n"
          "the list of every row, e.g. from assign() or another library's partition; without it every row goes\n"
          "to its nearest centroid (assign(x)).")
      .def(
          "assign",
          [](R& r, const py::object& x) {
            F32In in = check_dim(r.index->dim(), x, "x");
            py::array_t<int64_t> out(py::ssize_t(in.view.rows));
            std::vector<int32_t> ids(in.view.rows);
            r.locked<false>([&] { r.index->assign(in.view, ids.data()); });
            std::copy(ids.begin(), ids.end(), out.mutable_data());
            return out;
          },
          "x"_a,
          "The coarse assignment add(x) makes: the list of each row's nearest centroid (int64, n; cosine: of the\n"
          "unit rows).")
      .def(
          "search",
          [](R& r, const py::object& q, py::ssize_t k, py::ssize_t nprobe, const py::object& rerank_arg,
             bool single_stage) {
            if (k < 1) throw_invalid("k must be at least 1, got " + std::to_string(k));
            if (nprobe < 1) throw_invalid("nprobe must be at least 1, got " + std::to_string(nprobe));
            size_t rerank = 0;
            if (py::isinstance<py::str>(rerank_arg)) {
              if (rerank_arg.cast<std::string>() != "auto")
                throw_invalid("rerank must be an int ≥ 0 or \"auto\", got \"" + rerank_arg.cast<std::string>() + "\"");
              rerank = tessera::IndexIVFRaBitQ::kRerankByBound;
            } else {
              long long v = 0;
              try {
                if (py::isinstance<py::bool_>(rerank_arg)) throw py::cast_error();
                v = rerank_arg.cast<long long>();
              } catch (const py::cast_error&) {
                throw_invalid("rerank must be an int ≥ 0 or \"auto\", got " +
                              std::string(Py_TYPE(rerank_arg.ptr())->tp_name));
              }
              if (v < 0) throw_invalid("rerank must be at least 0, got " + std::to_string(v));
              rerank = size_t(v);
            }
            if (rerank > 0 && !r.index->keeps_vectors())
              throw_invalid("rerank needs the raw vectors: this index was built with keep_vectors=False");
            F32In in = check_dim(r.index->dim(), q, "q");
            const size_t nq = in.view.rows;
            py::array_t<float> D({py::ssize_t(nq), k});
            py::array_t<int64_t> I({py::ssize_t(nq), k});
            float* d = D.mutable_data();
            int64_t* i = I.mutable_data();
            r.locked<false>(
                [&] { r.index->search(in.view, size_t(k), size_t(nprobe), d, i, single_stage, rerank); });
            return py::make_tuple(D, I);
          },
          "q"_a, "k"_a, "nprobe"_a = 1, "rerank"_a = 0, "single_stage"_a = false,
          "The k best stored vectors of each query (q: nq × d) over the nprobe nearest lists (more than nlist\n"
          "is clamped) → (distances float32 nq × k, labels int64 nq × k): estimated squared L2 distances\n"
          "ascending, or inner products (cosines) descending; past the vectors found, label -1 and ±inf. Two stages by\n"
          "default (1-bit fast scan, full codes only where the 1-bit bound can win); single_stage=True\n"
          "estimates every vector of the probed lists with its full code. rerank=R > 0 (needs keep_vectors):\n"
          "the max(R, k) best by estimate get exact distances from the raw vectors, and the k best of those\n"
          "are returned with their exact distances (a third stage). rerank=\"auto\": re-ranking by the error\n"
          "bound (the RaBitQ paper's): a vector gets its exact distance only when its estimate's interval\n"
          "reaches the k-th best exact distance so far; every value returned is exact.")
      .def(
          "save", [](R& r, const py::object& path) {
            const std::string p = path_str(path);
            r.locked<false>([&] { r.index->save(p); });
          },
          "path"_a, "Write the index file (atomically).")
      .def_static(
          "load",
          [](const py::object& path) {
            const std::string p = path_str(path);
            auto r = std::make_unique<R>();
            r->index = without_gil(nullptr, [&] { return std::make_unique<IndexIVFRaBitQ>(IndexIVFRaBitQ::load(p)); });
            return r;
          },
          "path"_a, "Read an index file written by save().")
      .def_property_readonly("d", [](R& r) { return r.index->dim(); })
      .def_property_readonly("nlist", [](R& r) { return r.index->nlist(); })
      .def_property_readonly("ntotal", [](R& r) { return r.locked<false>([&] { return r.index->ntotal(); }); })
      .def_property_readonly("bits", [](R& r) { return r.index->quantizer().params().bits; })
      .def_property_readonly("metric", [](R& r) { return tessera::metric_name(r.index->metric_type()); })
      .def_property_readonly("keep_vectors", [](R& r) { return r.index->keeps_vectors(); },
                             "Whether the raw vectors are stored (search(rerank=R) needs them).")
      .def_property_readonly("is_trained", [](R& r) { return r.locked<false>([&] { return r.index->is_trained(); }); })
      .def_property_readonly(
          "centroids",
          [](R& r) {
            tessera::FloatMatrix c = r.locked<false>([&] {
              if (!r.index->is_trained()) throw_invalid("the index is not trained: no centroids yet");
              return r.index->centroids();
            });
            return matrix_to_numpy(std::move(c));
          },
          "The coarse centroids (nlist × d float32, a copy).")
      .def_property_readonly(
          "list_sizes",
          [](R& r) {
            return r.locked<false>([&] {
              std::vector<size_t> s(r.index->nlist());
              for (size_t l = 0; l < s.size(); ++l) s[l] = r.index->list_size(l);
              return s;
            });
          },
          "Vectors per list.")
      .def("__repr__", [](R& r) {
        return "IVFRaBitQ(d=" + std::to_string(r.index->dim()) + ", nlist=" + std::to_string(r.index->nlist()) +
               ", bits=" + std::to_string(r.index->quantizer().params().bits) + ", metric='" +
               tessera::metric_name(r.index->metric_type()) + "', ntotal=" + std::to_string(r.index->ntotal()) + ")";
      });
}

}  // namespace tessera_py

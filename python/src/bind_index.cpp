// IndexAdditiveQuantizer (the flat index) and IndexAdditiveQuantizerFastScan (its 4-bit fast-scan variant) over
// a ResidualQuantizer or LocalSearchQuantizer with faiss's names (add, search → (distances, labels), ntotal,
// reset, METRIC_L2 / METRIC_INNER_PRODUCT), plus files (save / read_index, which reads either type /
// write_index). An index shares the Python quantizer object's model and keeps it alive.
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>

#include "bind_additive.h"
#include "bind_quant.h"
#include "tessera/index/index_additive_quantizer.h"
#include "tessera/index/index_additive_quantizer_fast_scan.h"
#include "tessera/index/index_io.h"
#include "tessera/index/index_ivf_additive_quantizer.h"

namespace tessera_py {

namespace {

using PyLSQ = PyModel<tessera::LocalSearchQuantizer>;

/// The index, the Python quantizer it searches with, and the locks: the index's own (add/reset exclusive,
/// search shared) and the quantizer wrapper's (shared while the codec is used), always taken in that order.
template <class Index>
struct PyIndexT {
  std::unique_ptr<Index> index;
  py::object quantizer;
  std::shared_mutex* model_mu = nullptr;
  std::function<void()> check_reentry;  // the quantizer's: refuses use from its own training's callback
  std::shared_mutex mu;
};
using PyIndex = PyIndexT<tessera::IndexAdditiveQuantizer>;

/// The IVF index keeps faiss's nprobe attribute (search's default) beside the common parts.
struct PyIVF : PyIndexT<tessera::IndexIVFAdditiveQuantizer> {
  size_t nprobe = 1;
};
using PyFastScan = PyIndexT<tessera::IndexAdditiveQuantizerFastScan>;

struct Codec {
  std::shared_ptr<tessera::AdditiveQuantizer> q;
  std::shared_mutex* mu;
  std::function<void()> check_reentry;
};

Codec codec_of(const py::object& quantizer) {
  if (py::isinstance<PyRQ>(quantizer)) {
    auto* r = &quantizer.cast<PyRQ&>();
    return {r->q, &r->mu, [r] { r->check_reentry(); }};
  }
  if (py::isinstance<PyLSQ>(quantizer)) {
    auto* r = &quantizer.cast<PyLSQ&>();
    return {r->q, &r->mu, [r] { r->check_reentry(); }};
  }
  throw py::type_error("IndexAdditiveQuantizer needs a tessera.ResidualQuantizer or tessera.LocalSearchQuantizer, got " +
                       py::str(py::type::of(quantizer)).cast<std::string>());
}

tessera::MetricType metric_arg(const py::object& v) {
  if (py::isinstance<py::str>(v)) return tessera::parse_metric(v.cast<std::string>());
  if (py::isinstance<py::bool_>(v) || !py::hasattr(v, "__index__"))
    throw py::type_error("metric must be 'l2', 'ip' or faiss's METRIC_L2 (1) / METRIC_INNER_PRODUCT (0)");
  return tessera::metric_from_int(py::int_(v.attr("__index__")()).cast<long>());
}

/// Run f() without the GIL, holding the index lock (exclusive or shared) and the model's shared lock.
template <bool Exclusive, class R, class F>
auto locked(R& r, F&& f) -> decltype(f()) {
  r.check_reentry();
  return without_gil(nullptr, [&]() -> decltype(f()) {
    std::unique_lock<std::shared_mutex> ex(r.mu, std::defer_lock);
    std::shared_lock<std::shared_mutex> sh(r.mu, std::defer_lock);
    if constexpr (Exclusive) ex.lock();
    else sh.lock();
    std::shared_lock<std::shared_mutex> model(*r.model_mu);
    return f();
  });
}

/// The Python wrapper of a codec read from an index file (it is shared with nobody else yet).
py::object wrap_codec(const std::shared_ptr<const tessera::AdditiveQuantizer>& aq) {
  auto q = std::const_pointer_cast<tessera::AdditiveQuantizer>(aq);
  if (auto rq = std::dynamic_pointer_cast<tessera::ResidualQuantizer>(q)) return py::cast(std::make_unique<PyRQ>(rq));
  if (auto lsq = std::dynamic_pointer_cast<tessera::LocalSearchQuantizer>(q))
    return py::cast(std::make_unique<PyLSQ>(lsq));
  throw_error(g_format, "the index holds a '" + q->type_name() + "' quantizer, which this module cannot wrap");
}

template <class Index, class Read>
std::unique_ptr<PyIndexT<Index>> load_with(const py::object& path, Read read) {
  const std::string p = path_str(path);
  auto idx = without_gil(nullptr, [&] { return std::make_unique<Index>(read(p)); });
  auto out = std::make_unique<PyIndexT<Index>>();
  out->quantizer = wrap_codec(idx->quantizer_ptr());
  Codec c = codec_of(out->quantizer);
  out->model_mu = c.mu;
  out->check_reentry = std::move(c.check_reentry);
  out->index = std::move(idx);
  return out;
}

std::unique_ptr<PyIndex> load(const py::object& path) {
  return load_with<tessera::IndexAdditiveQuantizer>(path, [](const std::string& p) { return tessera::read_index(p); });
}

std::unique_ptr<PyFastScan> load_fast_scan(const py::object& path) {
  return load_with<tessera::IndexAdditiveQuantizerFastScan>(
      path, [](const std::string& p) { return tessera::read_index_fast_scan(p); });
}

std::unique_ptr<PyIVF> load_ivf(const py::object& path) {
  const std::string p = path_str(path);
  auto idx = without_gil(nullptr, [&] {
    return std::make_unique<tessera::IndexIVFAdditiveQuantizer>(tessera::read_index_ivf(p));
  });
  auto out = std::make_unique<PyIVF>();
  out->quantizer = wrap_codec(idx->quantizer_ptr());
  Codec c = codec_of(out->quantizer);
  out->model_mu = c.mu;
  out->check_reentry = std::move(c.check_reentry);
  out->index = std::move(idx);
  return out;
}

/// Any index type, by the file's header.
py::object load_any(const py::object& path) {
  const std::string p = path_str(path);
  const std::string type = without_gil(nullptr, [&] { return tessera::index_file_type(p); });
  if (type == "index_additive_fast_scan") return py::cast(load_fast_scan(path));
  if (type == "index_ivf_additive") return py::cast(load_ivf(path));
  return py::cast(load(path));  // the flat reader names anything else it finds
}

/// A new index over a trained quantizer (the model's lock taken without the GIL: a training thread may need
/// the GIL for its progress callback).
template <class Index, class Make>
std::unique_ptr<PyIndexT<Index>> make_index(const py::object& quantizer, const char* name, Make make) {
  Codec c = codec_of(quantizer);
  c.check_reentry();
  auto out = std::make_unique<PyIndexT<Index>>();
  out->index = without_gil(nullptr, [&]() -> std::unique_ptr<Index> {
    std::shared_lock lock(*c.mu);
    if (!c.q->is_trained()) return nullptr;
    return make(c.q);
  });
  if (!out->index) throw_invalid(std::string(name) + " needs a trained quantizer: call train() (or fit()) first");
  out->quantizer = quantizer;
  out->model_mu = c.mu;
  out->check_reentry = std::move(c.check_reentry);
  return out;
}

/// What every additive-quantizer index offers (flat, fast-scan, IVF).
template <class R>
void def_shared(py::class_<R>& cls) {
  cls.def_property_readonly("ntotal", [](R& r) { return r.index->ntotal(); }, "Vectors stored.")
      .def("__len__", [](R& r) { return r.index->ntotal(); })
      .def_property_readonly("d", [](R& r) { return r.index->dim(); }, "Vector dimension.")
      .def_property_readonly("code_size", [](R& r) { return r.index->code_size(); }, "Bytes per stored code.")
      .def_property_readonly(
          "metric_type", [](R& r) { return int(r.index->metric_type()); },
          "faiss's value: METRIC_L2 (1) or METRIC_INNER_PRODUCT (0).")
      .def_property_readonly(
          "metric", [](R& r) { return tessera::metric_name(r.index->metric_type()); }, "'l2' or 'ip'.")
      .def_property_readonly("quantizer", [](R& r) { return r.quantizer; }, "The quantizer object searched with.")
      .def_property_readonly("aq", [](R& r) { return r.quantizer; }, "The quantizer (faiss's name).")
      .def(
          "add",
          [](R& r, const py::object& x) {
            F32In in = check_dim(r.index->dim(), x, "x");
            locked<true>(r, [&] { r.index->add(in.view); });
          },
          "x"_a, "Encode x (n × d) and store the codes; their labels continue from ntotal.")
      .def(
          "save",
          [](R& r, const py::object& path, const py::object& metadata) {
            const std::string p = path_str(path);
            const std::string meta =
                metadata.is_none() ? "{}" : py::module_::import("json").attr("dumps")(metadata).cast<std::string>();
            locked<false>(r, [&] { tessera::write_index(*r.index, p, meta); });
          },
          "path"_a, "metadata"_a = py::none(),
          "Write the index (quantizer, metric and codes) atomically; metadata: a JSON-serialisable dict.");
}

/// What the flat indexes (plain and fast-scan) add: a trained quantizer, stored codes, search over all.
template <class R>
void def_common(py::class_<R>& cls) {
  def_shared(cls);
  cls      .def_property_readonly("is_trained", [](R&) { return true; }, "Always True: the quantizer is trained.")
      .def(
          "add_codes",
          [](R& r, const py::object& codes) {
            py::array a = packed_arg(codes, r.index->code_size());
            const auto* p = static_cast<const uint8_t*>(a.data());
            const size_t n = size_t(a.shape(0));
            locked<true>(r, [&] { r.index->add_codes(n, p); });
          },
          "codes"_a, "Store packed codes (n × code_size uint8, as compute_codes returns them).")
      .def(
          "search",
          [](R& r, const py::object& q, py::ssize_t k) {
            if (k < 1) throw_invalid("k must be at least 1, got " + std::to_string(k));
            F32In in = check_dim(r.index->dim(), q, "q");
            const size_t nq = in.view.rows;
            py::array_t<float> D({py::ssize_t(nq), k});
            py::array_t<int64_t> I({py::ssize_t(nq), k});
            float* d = D.mutable_data();
            int64_t* i = I.mutable_data();
            locked<false>(r, [&] { r.index->search(in.view, size_t(k), d, i); });
            return py::make_tuple(D, I);
          },
          "q"_a, "k"_a,
          "The k nearest stored vectors of each query: q: nq × d → (distances float32 nq × k, labels int64 nq × k).\n"
          "L2: ascending squared distances through the search type (ST_norm_float: exactly ‖q − x'‖²);\n"
          "inner product: descending ⟨q, x'⟩. Equal distances go to the lower label; past ntotal, label -1 and\n"
          "distance +inf (L2) / -inf (inner product).")
      .def("reset", [](R& r) { locked<true>(r, [&] { r.index->reset(); }); }, "Remove every stored code.")
      .def_property_readonly(
          "codes",
          [](R& r) {
            return matrix_to_numpy(locked<false>(r, [&] {
              tessera::Matrix<uint8_t> c(r.index->ntotal(), r.index->code_size());
              std::copy(r.index->codes().begin(), r.index->codes().end(), c.data());
              return c;
            }));
          },
          "A copy of the stored codes in the quantizer's packed layout: ntotal × code_size uint8.");
}

}  // namespace

void bind_index(py::module_& m) {
  m.attr("METRIC_INNER_PRODUCT") = py::int_(int(tessera::MetricType::inner_product));
  m.attr("METRIC_L2") = py::int_(int(tessera::MetricType::L2));
  py::class_<PyIndex> cls(m, "IndexAdditiveQuantizer",
                          "Flat index over the codes of a trained additive quantizer (faiss's IndexAdditiveQuantizer):\n"
                          "add() encodes and stores packed codes, search() scans them all with the quantizer's search\n"
                          "type. The quantizer is shared, not copied: retraining it or changing its search type\n"
                          "invalidates the stored codes (search then raises).");
  cls.def(py::init([](const py::object& quantizer, const py::object& metric) {
            const tessera::MetricType mt = metric_arg(metric);
            return make_index<tessera::IndexAdditiveQuantizer>(quantizer, "IndexAdditiveQuantizer", [&](auto q) {
              return std::make_unique<tessera::IndexAdditiveQuantizer>(q, mt);
            });
          }),
          "quantizer"_a, "metric"_a = "l2",
          "quantizer: a trained ResidualQuantizer or LocalSearchQuantizer. metric: 'l2' or 'ip', or faiss's\n"
          "METRIC_L2 (1) / METRIC_INNER_PRODUCT (0).");
  def_common(cls);
  cls.def(
         "reconstruct_n",
         [](PyIndex& r, size_t i0, size_t n) {
           if (i0 > r.index->ntotal() || n > r.index->ntotal() - i0)
             throw_invalid("reconstruct_n: vectors [" + std::to_string(i0) + ", " + std::to_string(i0 + n) +
                           ") are not all stored (ntotal " + std::to_string(r.index->ntotal()) + ")");
           py::array_t<float> out({py::ssize_t(n), py::ssize_t(r.index->dim())});
           float* o = out.mutable_data();
           locked<false>(r, [&] { r.index->reconstruct_n(i0, n, o); });
           return out;
         },
         "i0"_a, "n"_a, "Decoded stored vectors [i0, i0 + n): n × d float32.")
      .def_static("load", &load, "path"_a, "Read an index file written by save().");

  py::class_<PyFastScan> fs(
      m, "IndexAdditiveQuantizerFastScan",
      "4-bit fast-scan flat index (faiss's IndexAdditiveQuantizerFastScan): every codebook has 16 codewords;\n"
      "codes are stored in blocks of 32 vectors and scanned with uint8 lookup tables, byte shuffles and\n"
      "16-bit sums. L2 needs search type ST_norm_lsq2x4 / ST_norm_rq2x4, inner product ST_LUT_nonorm. The best\n"
      "rerank_factor·k (default 4·k) are re-scored with float tables, so distances are the flat index's.");
  fs.def(py::init([](const py::object& quantizer, const py::object& metric, size_t bbs) {
           const tessera::MetricType mt = metric_arg(metric);
           return make_index<tessera::IndexAdditiveQuantizerFastScan>(
               quantizer, "IndexAdditiveQuantizerFastScan",
               [&](auto q) { return std::make_unique<tessera::IndexAdditiveQuantizerFastScan>(q, mt, bbs); });
         }),
         "quantizer"_a, "metric"_a = "l2", "bbs"_a = 32,
         "quantizer: a trained ResidualQuantizer or LocalSearchQuantizer with nbits = 4. metric: 'l2' or 'ip'\n"
         "(or faiss's METRIC_L2 / METRIC_INNER_PRODUCT). bbs: vectors per stored block, a multiple of 32.");
  def_common(fs);
  fs.def_property_readonly("bbs", [](PyFastScan& r) { return r.index->bbs(); }, "Vectors per stored block.")
      .def_property_readonly("nsq", [](PyFastScan& r) { return r.index->nsq(); },
                             "Tables scanned per code: M (+ 2 for the norm with L2).")
      .def_property_readonly(
          "norm_scale", [](PyFastScan& r) { return r.index->norm_scale(); },
          "L2: the factor the norm tables are divided by before uint8 quantisation (0 until the first add).")
      .def_property(
          "rerank_factor", [](PyFastScan& r) { return r.index->rerank_factor(); },
          [](PyFastScan& r, size_t f) { locked<true>(r, [&] { r.index->set_rerank_factor(f); }); },
          "Candidates re-scored with float tables: rerank_factor·k (0: the uint8 estimates as they are).")
      .def_static("load", &load_fast_scan, "path"_a, "Read a fast-scan index file written by save().");


  py::class_<PyIVF> ivf(
      m, "IndexIVFAdditiveQuantizer",
      "Inverted-file index over an additive quantizer (faiss's IndexIVFAdditiveQuantizer): coarse k-means lists,\n"
      "each vector's residual from its list's centroid coded by the quantizer; search() scans the nprobe nearest\n"
      "lists with one lookup table per query. train() trains the quantizer on the residuals when it is untrained.");
  ivf.def(py::init([](const py::object& quantizer, size_t nlist, const py::object& metric) {
            const tessera::MetricType mt = metric_arg(metric);
            Codec c = codec_of(quantizer);
            auto out = std::make_unique<PyIVF>();
            out->index = std::make_unique<tessera::IndexIVFAdditiveQuantizer>(c.q, nlist, mt);
            out->quantizer = quantizer;
            out->model_mu = c.mu;
            out->check_reentry = std::move(c.check_reentry);
            return out;
          }),
          "quantizer"_a, "nlist"_a, "metric"_a = "l2",
          "quantizer: a ResidualQuantizer or LocalSearchQuantizer (trained or not). nlist: coarse lists (1 = one\n"
          "list around the data's mean). metric: 'l2' or 'ip', or faiss's METRIC_L2 / METRIC_INNER_PRODUCT.");
  def_shared(ivf);
  ivf.def_property_readonly("nlist", [](PyIVF& r) { return r.index->nlist(); }, "Coarse lists.")
      .def_readwrite("nprobe", &PyIVF::nprobe, "Lists scanned per query when search() is not given nprobe (faiss's).")
      .def_property_readonly("is_trained", [](PyIVF& r) { return r.index->is_trained(); },
                             "Coarse centroids set and quantizer trained.")
      .def_property_readonly(
          "centroids", [](PyIVF& r) { return matrix_to_numpy(locked<false>(r, [&] { return r.index->centroids(); })); },
          "The coarse centroids: nlist × d float32 (empty before training).")
      .def(
          "list_sizes",
          [](PyIVF& r) {
            return locked<false>(r, [&] {
              std::vector<size_t> s(r.index->nlist());
              for (size_t l = 0; l < s.size(); ++l) s[l] = r.index->list_size(l);
              return s;
            });
          },
          "Vectors per list.")
      .def(
          "train",
          [](PyIVF& r, const py::object& x) {
            F32In in = check_dim(r.index->dim(), x, "x");
            r.check_reentry();
            without_gil(nullptr, [&] {
              std::unique_lock<std::shared_mutex> ex(r.mu);
              std::unique_lock<std::shared_mutex> model(*r.model_mu);  // may train the shared quantizer
              r.index->train(in.view);
            });
          },
          "x"_a,
          "Coarse k-means on x (at most 256·nlist sampled rows) and, if it is untrained, the quantizer on the\n"
          "residuals of all of x (its norm encoding fitted to the norms of centroid + reconstruction).")
      .def(
          "set_centroids",
          [](PyIVF& r, const py::object& c) {
            F32In in = check_dim(r.index->dim(), c, "centroids");
            locked<true>(r, [&] { r.index->set_centroids(in.view); });
          },
          "centroids"_a, "Fixed coarse centroids (nlist × d), e.g. from another library; trains nothing else.")
      .def(
          "search",
          [](PyIVF& r, const py::object& q, py::ssize_t k, const py::object& nprobe_arg) {
            if (k < 1) throw_invalid("k must be at least 1, got " + std::to_string(k));
            const py::ssize_t nprobe = nprobe_arg.is_none() ? py::ssize_t(r.nprobe) : nprobe_arg.cast<py::ssize_t>();
            if (nprobe < 1) throw_invalid("nprobe must be at least 1, got " + std::to_string(nprobe));
            F32In in = check_dim(r.index->dim(), q, "q");
            const size_t nq = in.view.rows;
            py::array_t<float> D({py::ssize_t(nq), k});
            py::array_t<int64_t> I({py::ssize_t(nq), k});
            float* d = D.mutable_data();
            int64_t* i = I.mutable_data();
            locked<false>(r, [&] { r.index->search(in.view, size_t(k), size_t(nprobe), d, i); });
            return py::make_tuple(D, I);
          },
          "q"_a, "k"_a, "nprobe"_a = py::none(),
          "The k best stored vectors of each query over its nprobe nearest lists (default: the nprobe attribute;\n"
          "more than nlist scans all): (distances float32 nq × k, labels int64 nq × k). L2: ascending squared\n"
          "distances through the search type; inner product: descending. Past the vectors found: label -1.")
      .def(
          "reconstruct",
          [](PyIVF& r, int64_t id) {
            py::array_t<float> out(py::ssize_t(r.index->dim()));
            float* o = out.mutable_data();
            locked<false>(r, [&] { r.index->reconstruct(id, o); });
            return out;
          },
          "key"_a, "The stored vector with this label, decoded (centroid + reconstruction): d float32.")
      .def_static("load", &load_ivf, "path"_a, "Read an IVF index file written by save().");

  m.def("read_index", &load_any, "path"_a,
        "Read an index file written by IndexAdditiveQuantizer.save or IndexAdditiveQuantizerFastScan.save\n"
        "(faiss's name): the index type is the file's.");
  m.def(
      "write_index", [](PyIndex& r, const py::object& path) {
        const std::string p = path_str(path);
        locked<false>(r, [&] { tessera::write_index(*r.index, p); });
      },
      "index"_a, "path"_a, "index.save(path) (faiss's name).");
  m.def(
      "write_index", [](PyFastScan& r, const py::object& path) {
        const std::string p = path_str(path);
        locked<false>(r, [&] { tessera::write_index(*r.index, p); });
      },
      "index"_a, "path"_a, "index.save(path) (faiss's name).");
  m.def(
      "write_index", [](PyIVF& r, const py::object& path) {
        const std::string p = path_str(path);
        locked<false>(r, [&] { tessera::write_index(*r.index, p); });
      },
      "index"_a, "path"_a, "index.save(path) (faiss's name).");
}

}  // namespace tessera_py

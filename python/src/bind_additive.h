// The additive-quantizer base API (faiss's AdditiveQuantizer surface) for every Python codec class whose
// wrapper is a PyModel<Q> with Q derived from tessera::AdditiveQuantizer: shapes, search type and norms,
// packed codes, lookup tables, codebooks. A codec binding calls def_additive_base(cls) once; it adds
// nothing codec-specific (constructor, train, encode stay with the codec's own binding).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "bind_quant.h"
#include "tessera/quant/additive_quantizer.h"
#include "tessera/quant/local_search_quantizer.h"
#include "tessera/quant/search_type.h"

namespace tessera_py {

/// A search type from faiss's integer (0..9) or name ("ST_norm_float", also "norm_float").
inline tessera::SearchType search_type_arg(py::handle v) {
  if (py::isinstance<py::str>(v)) return tessera::parse_search_type(v.cast<std::string>());
  if (py::isinstance<py::bool_>(v) || !py::hasattr(v, "__index__"))
    throw py::type_error("search_type must be an int (faiss's value, 0..9) or a name such as 'ST_norm_float'");
  return tessera::search_type_from_int(py::int_(v.attr("__index__")()).cast<long>());
}

/// ST_decompress = 0 ... ST_norm_rq2x4 = 9 as attributes of `scope` (the module, or a class).
template <class Scope>
void def_search_type_constants(Scope& scope) {
  for (int v = 0; v < tessera::kNumSearchTypes; ++v)
    scope.attr(tessera::search_type_name(tessera::search_type_from_int(v)).c_str()) = py::int_(v);
}

/// packed codes: n × code_size uint8 (C-contiguous copy if needed).
inline py::array packed_arg(py::handle packed, size_t code_size) {
  py::array a = as_numeric_array(packed, "packed", "iu", 2, "n × code_size uint8");
  if (a.dtype().itemsize() != 1 || a.dtype().kind() != 'u') throw py::type_error("packed codes must be uint8");
  a = numpy().attr("ascontiguousarray")(a, "dtype"_a = "uint8");
  if (size_t(a.shape(1)) != code_size)
    throw_invalid("packed codes have " + std::to_string(a.shape(1)) + " bytes per row, the model's code size is " +
                  std::to_string(code_size));
  return a;
}

/// Unpacked codes: n × M integers.
inline I32In unpacked_arg(const tessera::AdditiveQuantizer& q, py::handle codes) {
  I32In in = as_i32(codes, "codes", "n × M int32");
  if (in.view.cols != q.num_codebooks())
    throw_invalid("codes have " + std::to_string(in.view.cols) + " columns, the model has " +
                  std::to_string(q.num_codebooks()) + " codebooks");
  return in;
}

/// A 1-D float32 array of n values (n = npos: any length).
inline py::array_t<float> floats_arg(py::handle v, const char* name, size_t n = size_t(-1)) {
  py::array a = as_numeric_array(v, name, "iuf", 1, "n float32");
  py::array_t<float> f = numpy().attr("ascontiguousarray")(a, "dtype"_a = "float32");
  if (n != size_t(-1) && size_t(f.shape(0)) != n)
    throw_invalid(std::string(name) + " has " + std::to_string(f.shape(0)) + " values, expected " + std::to_string(n));
  return f;
}

/// The Python wrapper of a loaded LSQ model (bind_lsq.cpp), or nullptr when q is not one (q is untouched).
std::unique_ptr<PyModel<tessera::LocalSearchQuantizer>> adopt_lsq(std::unique_ptr<tessera::Quantizer>& q,
                                                                  const std::string& meta);

template <class W>
void def_additive_base(py::class_<W>& cls) {
  def_search_type_constants(cls);
  cls.def_property_readonly("dim", [](W& r) { return r.q->dim(); }, "Vector dimension d.")
      .def_property_readonly("d", [](W& r) { return r.q->dim(); }, "Vector dimension d (faiss's name).")
      .def_property_readonly("M", [](W& r) { return r.q->num_codebooks(); }, "Number of codebooks M.")
      .def_property_readonly("num_codebooks", [](W& r) { return r.q->num_codebooks(); }, "Number of codebooks M.")
      .def_property_readonly("codebook_sizes", [](W& r) { return r.q->codebook_sizes(); }, "K_m for each codebook.")
      .def_property_readonly(
          "nbits",
          [](W& r) {
            std::vector<size_t> v;
            for (size_t m = 0; m < r.q->num_codebooks(); ++m) v.push_back(r.q->nbits(m));
            return v;
          },
          "Bits of each packed code index: ⌈log2 K_m⌉ (faiss nbits).")
      .def_property_readonly(
          "codebook_offsets", [](W& r) { return r.q->codebook_offsets(); },
          "M + 1 offsets: codebook m is rows [offsets[m], offsets[m+1]) of codebooks.")
      .def_property_readonly("total_codebook_size", [](W& r) { return r.q->total_codebook_size(); }, "Σ_m K_m.")
      .def_property_readonly(
          "tot_bits", [](W& r) { return r.q->tot_bits(); }, "Bits of a packed code: Σ nbits + norm_bits (as faiss).")
      .def_property_readonly("index_bits", [](W& r) { return r.q->index_bits(); }, "Bits of the code indices: Σ nbits.")
      .def_property_readonly("norm_bits", [](W& r) { return r.q->norm_bits(); }, "Bits of the stored norm (0, 4, 8, 32).")
      .def_property_readonly(
          "code_size", [](W& r) { return r.q->code_size(); }, "Bytes per packed code: ⌈tot_bits / 8⌉.")
      .def_property_readonly("is_trained", [](W& r) { return r.q->is_trained(); }, "Whether codebooks are set.")
      .def_property(
          "search_type", [](W& r) { return static_cast<int>(r.q->search_type()); },
          [](W& r, const py::object& st) {
            const tessera::SearchType t = search_type_arg(st);
            write_locked(r, nullptr, [&] { r.q->set_search_type(t); });
          },
          "faiss's search type as an int (ST_decompress = 0 … ST_norm_rq2x4 = 9). Set with an int or a name; a\n"
          "new type restarts the norm encoder (train() or train_norm() before packing qint/cqint/2x4 norms).")
      .def_property_readonly(
          "search_type_name", [](W& r) { return tessera::search_type_name(r.q->search_type()); },
          "The search type's name, e.g. 'ST_norm_float'.")
      .def_property_readonly("norm_min", [](W& r) { return r.q->norm_min(); }, "Least training norm (train_norm).")
      .def_property_readonly("norm_max", [](W& r) { return r.q->norm_max(); }, "Largest training norm (train_norm).")
      .def_property_readonly(
          "norm_table",
          [](W& r) { return vector_to_numpy(read_locked(r, [&] { return r.q->norm_encoder().table(); })); },
          "cqint: the ascending centres; lsq2x4/rq2x4: the 256 sums, entry i*16 + j = c0[j] + c1[i]; else empty.")
      .def_property_readonly(
          "norm_tabs",
          [](W& r) { return vector_to_numpy(read_locked(r, [&] { return r.q->norm_encoder().tabs(); })); },
          "lsq2x4/rq2x4: c0 (16 values) then c1 (16), faiss's norm_tabs; else empty.")
      .def(
          "train_norm",
          [](W& r, const py::object& norms) {
            auto f = floats_arg(norms, "norms");
            const float* p = f.data();
            const size_t n = size_t(f.shape(0));
            write_locked(r, nullptr, [&] { r.q->train_norm(n, p); });
          },
          "norms"_a, "Learn the norm encoding from squared norms of reconstructions (1-D float32).")
      .def(
          "encode_norm", [](W& r, float norm) { return read_locked(r, [&] { return r.q->encode_norm(norm); }); },
          "norm"_a, "The stored code of one squared norm.")
      .def(
          "decode_norm", [](W& r, uint64_t code) { return read_locked(r, [&] { return r.q->decode_norm(code); }); },
          "code"_a, "The squared norm a norm code stands for.")
      .def(
          "compute_codebook_tables", [](W& r) { write_locked(r, nullptr, [&] { r.q->compute_codebook_tables(); }); },
          "Compute codeword norms and codebook cross products (what ST_norm_from_LUT searches with).")
      .def_property_readonly(
          "codebooks",
          [](W& r) {
            r.require_trained("codebooks");
            return matrix_to_numpy(read_locked(r, [&] { return tessera::FloatMatrix::copy_of(r.q->codebooks_flat()); }));
          },
          "A copy of every codebook in one float32 array (total_codebook_size, d): faiss's layout, codeword k of\n"
          "codebook m at row codebook_offsets[m] + k.")
      .def(
          "codebook",
          [](W& r, size_t m) {
            r.require_trained("codebook");
            if (m >= r.q->num_codebooks())
              throw py::index_error("codebook " + std::to_string(m) + " of " + std::to_string(r.q->num_codebooks()));
            return matrix_to_numpy(read_locked(r, [&] { return tessera::FloatMatrix::copy_of(r.q->codebook(m)); }));
          },
          "m"_a, "A copy of codebook m: K_m × d float32.")
      .def(
          "set_codebooks",
          [](W& r, const py::object& books) {
            std::vector<tessera::FloatMatrix> list;
            tessera::FloatMatrix flat;
            if (py::isinstance<py::array>(books) && books.attr("ndim").cast<int>() == 2) {
              flat = tessera::FloatMatrix::copy_of(as_f32(books, "codebooks", "total_codebook_size × d float32").view);
            } else {
              for (py::handle b : py::iter(books))
                list.push_back(tessera::FloatMatrix::copy_of(as_f32(b, "codebook", "K_m × d float32").view));
            }
            write_locked(r, nullptr, [&] {
              if (flat.rows()) r.q->set_codebooks(flat.view());
              else r.q->set_codebooks(std::move(list));
            });
          },
          "codebooks"_a,
          "Replace every codebook: one (total_codebook_size, d) array in faiss's layout, or a list of M arrays\n"
          "K_m × d. Marks the model trained; the norm encoder is kept (train_norm() to refit it).")
      .def(
          "pack_codes",
          [](W& r, const py::object& codes, const py::object& norms) {
            I32In c = unpacked_arg(*r.q, codes);
            const size_t n = c.view.rows;
            py::array_t<float> nf;
            if (!norms.is_none()) nf = floats_arg(norms, "norms", n);
            const float* np_ = norms.is_none() ? nullptr : nf.data();
            py::array_t<uint8_t> out({py::ssize_t(n), py::ssize_t(r.q->code_size())});
            uint8_t* o = out.mutable_data();
            read_locked(r, [&] { r.q->pack_codes(n, c.view.data, o, -1, np_); });
            return out;
          },
          "codes"_a, "norms"_a = py::none(),
          "Bit-pack codes: n × M int32 → n × code_size uint8, faiss's layout (nbits per code, LSB first, code 0\n"
          "first, then the norm code). norms: n squared norms to store; default: those of the reconstructions.")
      .def(
          "unpack_codes",
          [](W& r, const py::object& packed) {
            py::array a = packed_arg(packed, r.q->code_size());
            const size_t n = size_t(a.shape(0));
            py::array_t<int32_t> out({py::ssize_t(n), py::ssize_t(r.q->num_codebooks())});
            int32_t* o = out.mutable_data();
            const auto* src = static_cast<const uint8_t*>(a.data());
            without_gil(nullptr, [&] { r.q->unpack_codes(src, n, o); });
            return out;
          },
          "packed"_a, "Unpack codes: n × code_size uint8 → n × M int32 (the norm bits are skipped).")
      .def(
          "decode",
          [](W& r, const py::object& codes) {
            r.require_trained("decode");
            py::array a = as_numeric_array(codes, "codes", "iu", 2, "n × code_size uint8 or n × M int32");
            const bool packed = a.dtype().kind() == 'u' && a.dtype().itemsize() == 1;
            py::array keep;
            I32In c;
            size_t n;
            if (packed) {
              keep = packed_arg(a, r.q->code_size());
              n = size_t(keep.shape(0));
            } else {
              c = unpacked_arg(*r.q, a);
              n = c.view.rows;
            }
            py::array_t<float> out({py::ssize_t(n), py::ssize_t(r.q->dim())});
            float* o = out.mutable_data();
            read_locked(r, [&] {
              if (packed) r.q->decode_packed(static_cast<const uint8_t*>(keep.data()), n, o);
              else r.q->decode(c.view.data, n, o);
            });
            return out;
          },
          "codes"_a,
          "Reconstructions Σ_m C_m[code_m] → n × d float32, from packed codes (uint8, n × code_size, as faiss's\n"
          "decode) or unpacked codes (any other integer dtype, n × M).")
      .def(
          "compute_codes",
          [](W& r, const py::object& x) {
            r.require_trained("compute_codes");
            F32In in = check_dim(r, x, "x");
            py::array_t<uint8_t> out({py::ssize_t(in.view.rows), py::ssize_t(r.q->code_size())});
            uint8_t* o = out.mutable_data();
            read_locked(r, [&] { r.q->encode_packed(in.view, o); });
            return out;
          },
          "x"_a, "Encode and pack (with the search type's norms): x: n × d → n × code_size uint8, as faiss.")
      .def(
          "compute_LUT",
          [](W& r, const py::object& xq, float alpha) {
            r.require_trained("compute_LUT");
            F32In in = check_dim(r, xq, "xq");
            py::array_t<float> out({py::ssize_t(in.view.rows), py::ssize_t(r.q->total_codebook_size())});
            float* o = out.mutable_data();
            tessera::FloatMatrix q = tessera::FloatMatrix::copy_of(in.view);  // contiguous rows for the GEMM
            read_locked(r, [&] { r.q->compute_LUT(q.rows(), q.data(), o, alpha); });
            return out;
          },
          "xq"_a, "alpha"_a = 1.0f,
          "alpha · ⟨xq_i, every codeword⟩: xq: n × d → n × total_codebook_size float32 (faiss compute_LUT).");
}

}  // namespace tessera_py

// The byte-level pieces every tessera model and index file shares (layout: serialization.h): the magic,
// little-endian fields and the CRC-32 trailer. Private to the library.
#pragma once
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <string>

namespace tessera::detail {

inline constexpr char kFileMagic[8] = {'T', 'E', 'S', 'S', 'E', 'R', 'A', '\x1a'};

/// Append v's bytes (little-endian hosts only: x86-64, aarch64).
template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

/// zlib's CRC-32 of size bytes, in chunks zlib's uInt can hold.
inline uint32_t crc32_of(const void* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (size) {
    const uInt chunk = (uInt)std::min<size_t>(size, 1u << 30);
    crc = crc32(crc, p, chunk);
    p += chunk;
    size -= chunk;
  }
  return (uint32_t)crc;
}

}  // namespace tessera::detail

// A bounded max-heap that keeps the `cap` smallest values offered, under a total order (the same set in any
// order of offers): the per-cluster "e cheapest" collections of the balanced assignment and the index scans'
// best k.
#pragma once
#include <algorithm>
#include <cstddef>
#include <functional>
#include <vector>

namespace tessera::detail {

template <class T, class Less = std::less<T>>
void keep_smallest(std::vector<T>& heap, size_t cap, const T& v, Less less = {}) {
  if (heap.size() < cap) {
    heap.push_back(v);
    std::push_heap(heap.begin(), heap.end(), less);
  } else if (less(v, heap.front())) {
    std::pop_heap(heap.begin(), heap.end(), less);
    heap.back() = v;
    std::push_heap(heap.begin(), heap.end(), less);
  }
}

}  // namespace tessera::detail

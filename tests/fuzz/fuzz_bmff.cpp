// SPDX-License-Identifier: LGPL-2.1-or-later
// Fuzz target: the ISO-BMFF walker and what the CMAF split reads. Input: an MP4 file. It is read from memory
// and as a file (parse and read_fragmented_mp4 must agree, the growing reader must never see a fragment the
// complete reading lacks), checked for nesting and for a missing movie header, and split into segments.
#include "core/error.h"
#include "media/bmff.h"

#include "fuzz.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace {

using sluice::Error;
using namespace sluice::media;

int memfd = -1;
std::string file_path; // /proc/self/fd/N of memfd: a regular file that never touches the disk
std::string split_dir;

void write_input(const std::string &bytes) {
  FUZZ_CHECK(ftruncate(memfd, 0) == 0, "ftruncate");
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t k = pwrite(memfd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    FUZZ_CHECK(k > 0, "pwrite");
    done += static_cast<std::size_t>(k);
  }
}

void clear_split_dir() {
  GDir *d = g_dir_open(split_dir.c_str(), 0, nullptr);
  FUZZ_CHECK(d, "cannot list " + split_dir);
  while (const char *name = g_dir_read_name(d))
    g_unlink((split_dir + "/" + name).c_str());
  g_dir_close(d);
}

// What every successful reading must satisfy: boxes inside the file, fragments in order, the decode time's
// bytes inside their fragment (the split writes there).
void check_structure(const FragmentedMp4 &mp4, std::uint64_t size) {
  FUZZ_CHECK(mp4.track.timescale > 0, "a track without a timescale");
  FUZZ_CHECK(mp4.ftyp_size > 0 && mp4.ftyp_offset + mp4.ftyp_size <= size, "ftyp outside the file");
  FUZZ_CHECK(mp4.moov_size > 0 && mp4.moov_offset + mp4.moov_size <= size, "moov outside the file");
  FUZZ_CHECK(!mp4.fragments.empty(), "no fragment");
  std::uint64_t end = 0;
  for (const auto &f : mp4.fragments) {
    FUZZ_CHECK(f.size > 0 && f.offset >= end && f.offset + f.size <= size,
               "a fragment outside the file or overlapping");
    end = f.offset + f.size;
    FUZZ_CHECK(f.sync_samples <= f.samples, "more sync samples than samples");
    if (f.tfdt_value_size) {
      FUZZ_CHECK(f.tfdt_value_size == 4 || f.tfdt_value_size == 8, "tfdt size");
      FUZZ_CHECK(f.tfdt_value_offset >= f.offset && f.tfdt_value_offset + f.tfdt_value_size <= f.offset + f.size,
                 "the decode time lies outside its fragment");
    }
  }
}

bool same_fragment(const Mp4Fragment &a, const Mp4Fragment &b) {
  return a.offset == b.offset && a.size == b.size && a.decode_time == b.decode_time && a.duration == b.duration &&
         a.samples == b.samples && a.sync_samples == b.sync_samples && a.tfdt_value_offset == b.tfdt_value_offset;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  memfd = memfd_create("sluice-fuzz-bmff", MFD_CLOEXEC);
  FUZZ_CHECK(memfd >= 0, "memfd_create");
  file_path = "/proc/self/fd/" + std::to_string(memfd);
  gchar *dir = g_dir_make_tmp("sluice-fuzz-bmff-XXXXXX", nullptr);
  FUZZ_CHECK(dir, "cannot make a temporary folder");
  split_dir = dir;
  g_free(dir);
  std::atexit([] {
    clear_split_dir();
    g_rmdir(split_dir.c_str());
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  const std::string bytes = sluice::fuzz::text_of(data, size);
  std::string nesting = mp4_nesting_problem_of(bytes);

  bool parsed = false;
  FragmentedMp4 mp4;
  try {
    mp4 = parse_fragmented_mp4(bytes);
    parsed = true;
  } catch (const Error &) {
  }
  if (parsed) {
    check_structure(mp4, size);
    (void)mp4.duration();
    (void)mp4.samples();
    (void)mp4.seconds(mp4.end_time());
    (void)constant_bandwidth(mp4, 2.0);
    (void)peak_bandwidth(mp4);
    (void)average_bandwidth(mp4);
  }

  write_input(bytes);
  FUZZ_CHECK(mp4_nesting_problem(file_path) == nesting, "the nesting check differs between file and memory");
  std::string unplayable = mp4_unplayable_reason(file_path);
  if (parsed)
    FUZZ_CHECK(unplayable.empty(), "a file the walker reads is called unplayable: " + unplayable);

  try {
    FragmentedMp4 from_file = read_fragmented_mp4(file_path);
    FUZZ_CHECK(parsed, "read from a file but not from memory");
    FUZZ_CHECK(from_file.fragments.size() == mp4.fragments.size(), "file and memory readings differ");
    for (std::size_t i = 0; i < mp4.fragments.size(); ++i)
      FUZZ_CHECK(same_fragment(from_file.fragments[i], mp4.fragments[i]), "file and memory readings differ");
    // The split reads the file at the offsets the walker found, after moving the track on the timeline.
    try {
      from_file.shift(1000);
    } catch (const Error &) {
    }
    try {
      split_fragmented_mp4(from_file, split_dir);
    } catch (const Error &) {
    }
    clear_split_dir();
  } catch (const Error &) {
    FUZZ_CHECK(!parsed, "read from memory but not from a file");
  }

  // The live reader, on the same bytes in two steps: it must never report a fragment that the reading of
  // the complete file does not have.
  try {
    GrowingMp4 growing(file_path);
    write_input(bytes.substr(0, size / 2));
    growing.update();
    write_input(bytes);
    growing.update();
    if (parsed) {
      const auto &seen = growing.mp4().fragments;
      FUZZ_CHECK(seen.size() <= mp4.fragments.size(), "the growing reader found more fragments");
      for (std::size_t i = 0; i < seen.size(); ++i)
        FUZZ_CHECK(same_fragment(seen[i], mp4.fragments[i]), "the growing reader found another fragment");
    }
  } catch (const Error &) {
  }
  return 0;
}

// eol/station/output.hpp — output that never lies: a file is written whole
// or not at all, and a write to standard output that fails is an error.
//
// write_file_atomically(): the text goes to a temporary file in the target's
// folder (so the rename cannot cross filesystems), is flushed and fsynced,
// then renamed over the target; on any failure the temporary file is removed
// and the target is left as it was — no partial file is ever visible.
//
// finish_stdout(): flushes standard output and reports whether every byte
// written to it arrived (a full disk, /dev/full, a closed pipe → false with
// the reason); every command calls it before it exits 0.
//
// Errors: UsageError naming the file and the system's reason ("No space left
// on device", "Permission denied", …).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace eol::station {

void write_file_atomically(const std::filesystem::path& file, std::string_view text);

/// Writes `text` to standard output; UsageError with the system's reason
/// ("No space left on device") when it does not all go.
void write_stdout(std::string_view text);

/// nullopt when standard output (stdio and std::cout) took everything; else
/// why it did not.
std::optional<std::string> finish_stdout();

}  // namespace eol::station

//! The unwind tables of every loaded module, prepared once at start-up so that walking a
//! frozen stack later needs no allocation, no file access and no lock.

use std::ops::Range;

use findshlibs::{SharedLibrary, TargetSharedLibrary};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

/// framehop over owned copies of `.eh_frame`/`.eh_frame_hdr` (a few hundred KiB per binary),
/// with the allocation-free cache policy.
pub(super) type Unwinder = framehop::UnwinderNative<Vec<u8>, framehop::MustNotAllocateDuringUnwind>;

/// Builds the unwinder from the modules loaded now. Allocates and reads files: start-up only.
///
/// A module loaded later (`dlopen`) is unknown to it; frames there fall back to frame
/// pointers, which may end the walk early.
pub(super) fn build_unwinder() -> Unwinder {
    use framehop::Unwinder as _;
    let mut unwinder = Unwinder::new();
    let vdso = vdso_image();
    let mut first = true;
    TargetSharedLibrary::each(|lib| {
        let is_main = std::mem::take(&mut first);
        let start = lib.actual_load_addr().0 as u64;
        let Some(end) = start.checked_add(lib.len() as u64) else {
            return;
        };
        if start == usize::MAX as u64 || start >= end {
            return;
        }
        let bias = lib.virtual_memory_bias().0 as u64;
        let name = lib.name().to_string_lossy().into_owned();
        let module = match vdso {
            Some(image) if (start..end).contains(&(image.as_ptr() as u64)) => {
                module_from_bytes(name, start..end, bias, image)
            }
            _ => module_from_file(name, start..end, bias, is_main),
        };
        if let Some(module) = module {
            unwinder.add_module(module);
        }
    });
    unwinder
}

type Module = framehop::Module<Vec<u8>>;

fn module_from_file(name: String, avma: Range<u64>, bias: u64, is_main: bool) -> Option<Module> {
    // /proc/self/exe still opens the executable after it was replaced or deleted on disk.
    let file = std::fs::File::open(&name)
        .or_else(|e| {
            if is_main {
                std::fs::File::open("/proc/self/exe")
            } else {
                Err(e)
            }
        })
        .ok()?;
    // SAFETY: a read-only private mapping of a loaded binary; only the parse below uses it,
    // and the sections we keep are copied out before it is unmapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    module_from_bytes(name, avma, bias, &map)
}

fn module_from_bytes(name: String, avma: Range<u64>, bias: u64, bytes: &[u8]) -> Option<Module> {
    let file = object::File::parse(bytes).ok()?;
    Some(framehop::Module::new(name, avma, bias, Sections(file)))
}

/// Hands framehop the sections it asks for, copied out of the parsed file.
struct Sections<'data>(object::File<'data>);

impl framehop::ModuleSectionInfo<Vec<u8>> for Sections<'_> {
    fn base_svma(&self) -> u64 {
        self.0.relative_address_base()
    }

    fn section_svma_range(&mut self, name: &[u8]) -> Option<Range<u64>> {
        let section = self.0.section_by_name_bytes(name)?;
        Some(section.address()..section.address() + section.size())
    }

    fn section_data(&mut self, name: &[u8]) -> Option<Vec<u8>> {
        let section = self.0.section_by_name_bytes(name)?;
        Some(section.uncompressed_data().ok()?.into_owned())
    }
}

/// The kernel's vDSO as mapped in this process. It has no file on disk, but carries unwind
/// tables; without them a busy loop calling `Instant::now()` often loses its whole stack.
fn vdso_image() -> Option<&'static [u8]> {
    // SAFETY: getauxval has no preconditions.
    let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
    if base == 0 {
        return None;
    }
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let range = maps.lines().find_map(|line| {
        let (range, rest) = line.split_once(' ')?;
        if !rest.trim_end().ends_with("[vdso]") {
            return None;
        }
        let (lo, hi) = range.split_once('-')?;
        let lo = usize::from_str_radix(lo, 16).ok()?;
        let hi = usize::from_str_radix(hi, 16).ok()?;
        Some(lo..hi)
    })?;
    if range.start != base || range.end <= base {
        return None;
    }
    // SAFETY: the vDSO stays mapped, readable and unchanged for the life of the process,
    // and `range` is exactly its mapping.
    Some(unsafe { std::slice::from_raw_parts(base as *const u8, range.end - base) })
}

/// The vDSO's exported functions as absolute address ranges, then the whole image with an
/// empty name, for naming frames the symbolizer cannot (it reads files; the vDSO has none).
pub(in crate::capture) fn vdso_symbols() -> Vec<(Range<usize>, String)> {
    let Some(image) = vdso_image() else {
        return Vec::new();
    };
    let Ok(file) = object::File::parse(image) else {
        return Vec::new();
    };
    // Symbol addresses are as linked; the image is mapped at `base`.
    let linked_base = file.segments().map(|s| s.address()).min().unwrap_or(0);
    let base = image.as_ptr() as u64;
    let mut symbols: Vec<_> = file
        .dynamic_symbols()
        .filter(|symbol| symbol.is_definition() && symbol.size() > 0)
        .filter_map(|symbol| {
            let start = (symbol.address().checked_sub(linked_base)? + base) as usize;
            let name = symbol.name().ok()?.to_owned();
            Some((start..start + symbol.size() as usize, name))
        })
        .collect();
    // Last, so that it only names what no exported function covers.
    let whole = image.as_ptr_range();
    symbols.push((whole.start as usize..whole.end as usize, String::new()));
    symbols
}

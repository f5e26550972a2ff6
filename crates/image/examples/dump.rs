//! Writes decoded pixels as `P5`/`P6` PNM files, for comparing with other decoders.
//! Usage: dump <pytx|rgb> <out-dir> <image>...

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let colour = match args.next().as_deref() {
        Some("rgb") => takedown_image::Colour::Rgb,
        _ => takedown_image::Colour::Pytx,
    };
    let out = std::path::PathBuf::from(args.next().ok_or("missing out dir")?);
    for (i, path) in args.enumerate() {
        let bytes = std::fs::read(&path)?;
        let target = out.join(format!("{i}.pnm"));
        match takedown_image::decode_as(&bytes, &takedown_image::Limits::default(), colour) {
            Ok(img) => {
                let mut f = std::fs::File::create(&target)?;
                write!(f, "P6\n{} {}\n255\n", img.width(), img.height())?;
                f.write_all(&img.to_rgb())?;
            }
            Err(e) => println!("{path}: error: {e}"),
        }
    }
    Ok(())
}

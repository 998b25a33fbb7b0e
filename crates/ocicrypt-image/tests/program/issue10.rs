use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let a: Vec<String> = std::env::args().collect();
    let (public, private, src, work) = (&a[1], &a[2], &a[3], &a[4]);
    let ec = ocicrypt::helpers::encrypt_config([format!("jwe:{public}")], Vec::<String>::new())?;
    let dc = ocicrypt::helpers::decrypt_config([private.clone()])?;
    assert!(ocicrypt::helpers::encrypt_config(["nope:x"], Vec::<String>::new()).is_err());
    assert!(ocicrypt::helpers::decrypt_config([format!("{work}/missing.pem")]).is_err());

    let src: ocicrypt_image::ImageRef = format!("oci:{src}:latest").parse()?;
    let enc: ocicrypt_image::ImageRef = format!("oci:{work}/enc:v1").parse()?;
    let top: ocicrypt_image::ImageRef = format!("oci:{work}/top:v1").parse()?;
    let back: ocicrypt_image::ImageRef = format!("oci:{work}/back:v1").parse()?;
    assert!("bogus:/x".parse::<ocicrypt_image::ImageRef>().is_err());

    ocicrypt_image::encrypt(&src, &enc, &ec, &ocicrypt_image::Options::default().jobs(2))?;
    ocicrypt_image::encrypt(&src, &top, &ec, &ocicrypt_image::Options::default().layers([-1]))?;
    ocicrypt_image::decrypt(&enc, &back, &dc, &ocicrypt_image::Options::default())?;
    let info = ocicrypt_image::inspect(&enc)?;
    println!("{}", serde_json::to_string(&info)?);
    Ok(())
}

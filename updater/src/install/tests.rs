#[allow(unused)]
fn _x() {}

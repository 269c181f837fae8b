//! What several integration tests share: a minimal GGUF writer that writes what it is told, type
//! codes and sizes unchecked, so the reader's tests can build corrupt files (the library's
//! `GgufWriter` refuses them).
#![allow(dead_code)]

/// A minimal GGUF writer for tests.
#[derive(Default)]
pub struct Writer {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl Writer {
    pub fn kv_u32(&mut self, k: &str, v: u32) -> &mut Self {
        string(&mut self.kv, k);
        self.kv.extend(4u32.to_le_bytes());
        self.kv.extend(v.to_le_bytes());
        self.n_kv += 1;
        self
    }
    pub fn kv_f32(&mut self, k: &str, v: f32) -> &mut Self {
        string(&mut self.kv, k);
        self.kv.extend(6u32.to_le_bytes());
        self.kv.extend(v.to_le_bytes());
        self.n_kv += 1;
        self
    }
    pub fn kv_str(&mut self, k: &str, v: &str) -> &mut Self {
        string(&mut self.kv, k);
        self.kv.extend(8u32.to_le_bytes());
        string(&mut self.kv, v);
        self.n_kv += 1;
        self
    }
    pub fn kv_strs(&mut self, k: &str, v: &[&str]) -> &mut Self {
        string(&mut self.kv, k);
        self.kv.extend(9u32.to_le_bytes());
        self.kv.extend(8u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for s in v {
            string(&mut self.kv, s);
        }
        self.n_kv += 1;
        self
    }
    pub fn kv_bool(&mut self, k: &str, v: bool) -> &mut Self {
        string(&mut self.kv, k);
        self.kv.extend(7u32.to_le_bytes());
        self.kv.push(u8::from(v));
        self.n_kv += 1;
        self
    }
    pub fn kv_f32s(&mut self, k: &str, v: &[f32]) -> &mut Self {
        string(&mut self.kv, k);
        self.kv.extend(9u32.to_le_bytes());
        self.kv.extend(6u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for x in v {
            self.kv.extend(x.to_le_bytes());
        }
        self.n_kv += 1;
        self
    }
    pub fn kv_i32s(&mut self, k: &str, v: &[i32]) -> &mut Self {
        string(&mut self.kv, k);
        self.kv.extend(9u32.to_le_bytes());
        self.kv.extend(5u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for x in v {
            self.kv.extend(x.to_le_bytes());
        }
        self.n_kv += 1;
        self
    }
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, bytes: &[u8]) -> &mut Self {
        while !self.data.len().is_multiple_of(32) {
            self.data.push(0);
        }
        string(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        self.n_tensors += 1;
        self
    }
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kv);
        out.extend(&self.infos);
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out.extend(&self.data);
        out
    }
}

//! RSA_Decrypt with the wrapping key.

use super::{CommandSpec, Error, Tpm};
use crate::consts::alg;
use crate::consts::cc;
use crate::marshal::Reader;
use crate::public::Object;
use crate::session::Auth;
use crate::transport::Transport;

impl CommandSpec {
    /// TPM2_RSA_Decrypt: one authorized handle (the key), no response handle, the
    /// ciphertext and the plaintext both encrypted when a session has decrypt/encrypt.
    pub const RSA_DECRYPT: CommandSpec = CommandSpec::new(cc::RSA_DECRYPT, 1)
        .with_command_encryption()
        .with_response_encryption();
}

impl<T: Transport> Tpm<T> {
    /// `TPM2_RSA_Decrypt` with OAEP-SHA256 and `label` (empty, or ending in a NUL);
    /// writes the message into `out` and returns its length.
    pub fn rsa_decrypt(
        &mut self,
        key: &Object,
        sessions: &mut [Auth<'_>],
        ciphertext: &[u8],
        label: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let reply = self.execute(&CommandSpec::RSA_DECRYPT, &[key], sessions, |w| {
            w.tpm2b(ciphertext)?;
            w.u16(alg::OAEP)?;
            w.u16(alg::SHA256)?;
            w.tpm2b(label)
        })?;
        let mut r = Reader::new(self.reply_params(&reply));
        let message = r.tpm2b(crate::public::MAX_RSA_BYTES)?;
        r.finish()?;
        out.get_mut(..message.len())
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(message);
        Ok(message.len())
    }
}

//! Objects: reading public areas, creating and loading keys, persisting and flushing them,
//! changing their authValue.

use super::{blob, expect_name, Blob, CommandSpec, Error, KeyBlob, Reply, Tpm, MAX_BLOB};
use crate::consts::cc;
use crate::consts::rh;
use crate::consts::st;
use crate::marshal::{ParseError, Reader};
use crate::public::{Object, Public, Template};
use crate::session::Auth;
use crate::transport::{Transport, MAX_TPM_MESSAGE};

/// Refuses a response handle that is not a transient object's.
fn expect_transient(handle: u32) -> Result<(), ParseError> {
    if handle >> 24 != rh::TRANSIENT_FIRST >> 24 {
        return Err(ParseError::UnexpectedHandle(handle));
    }
    Ok(())
}

impl<T: Transport> Tpm<T> {
    /// `TPM2_ReadPublic`: the object's public area, and the object with the Name
    /// computed here from that area (the TPM's claimed Name must agree). Not
    /// authenticated: compare the Name with a pinned one before trusting the key.
    pub fn read_public(&mut self, handle: u32) -> Result<(Object, Blob), Error> {
        let obj = Object::permanent(handle);
        let reply = self.simple(cc::READ_PUBLIC, &[&obj], |_| Ok(()))?;
        let mut r = Reader::new(self.reply_params(&reply));
        let raw = r.tpm2b(MAX_BLOB)?;
        let claimed = r.tpm2b(crate::public::MAX_NAME)?;
        let _qualified = r.tpm2b(crate::public::MAX_NAME)?;
        r.finish()?;
        let name = Public::parse(raw)?.name()?;
        expect_name(&name, claimed)?;
        let blob = blob(raw)?;
        Ok((Object { handle, name }, blob))
    }

    /// Runs `TPM2_Create` or `TPM2_CreatePrimary` (`spec`) under `parent`: both take
    /// the same parameters (inSensitive with `user_auth`, inPublic from `template`, empty
    /// outsideInfo and creationPCR) and may encrypt the first of them and of the response.
    fn execute_create(
        &mut self,
        spec: CommandSpec,
        parent: &Object,
        sessions: &mut [Auth<'_>],
        template: &Template<'_>,
        user_auth: &[u8],
    ) -> Result<Reply, Error> {
        let spec = spec.with_command_encryption().with_response_encryption();
        self.execute(&spec, &[parent], sessions, |w| {
            let m = w.begin_sized()?;
            w.tpm2b(user_auth)?;
            w.tpm2b(&[])?;
            w.end_sized(m)?;
            let m = w.begin_sized()?;
            template.marshal(w)?;
            w.end_sized(m)?;
            w.tpm2b(&[])?; // outsideInfo
            w.u32(0) // creationPCR: empty TPML_PCR_SELECTION
        })
    }

    /// Parses `TPM2B_CREATION_DATA, TPM2B_DIGEST, TPMT_TK_CREATION` (validated, unused).
    pub(super) fn skip_creation(r: &mut Reader<'_>) -> Result<(), ParseError> {
        r.tpm2b(MAX_TPM_MESSAGE)?;
        r.tpm2b(64)?;
        if r.u16()? != st::CREATION {
            return Err(ParseError::BadValue);
        }
        r.u32()?;
        r.tpm2b(64)?;
        Ok(())
    }

    /// `TPM2_CreatePrimary` under `hierarchy` (e.g. `Object::permanent(TPM_RH_OWNER)`):
    /// returns the loaded object (Name computed from the returned public area and
    /// checked against the TPM's) and its public area.
    pub fn create_primary(
        &mut self,
        hierarchy: &Object,
        sessions: &mut [Auth<'_>],
        template: &Template<'_>,
        user_auth: &[u8],
    ) -> Result<(Object, Blob), Error> {
        let spec = CommandSpec::new(cc::CREATE_PRIMARY, 1).with_response_handle();
        let reply = self.execute_create(spec, hierarchy, sessions, template, user_auth)?;
        let mut r = Reader::new(self.reply_params(&reply));
        let raw = r.tpm2b(MAX_BLOB)?;
        Self::skip_creation(&mut r)?;
        let claimed = r.tpm2b(crate::public::MAX_NAME)?;
        r.finish()?;
        expect_transient(reply.handle)?;
        let name = Public::parse(raw)?.name()?;
        expect_name(&name, claimed)?;
        let blob = blob(raw)?;
        Ok((
            Object {
                handle: reply.handle,
                name,
            },
            blob,
        ))
    }

    /// `TPM2_Create` under `parent`: the new key's private and public parts.
    pub fn create(
        &mut self,
        parent: &Object,
        sessions: &mut [Auth<'_>],
        template: &Template<'_>,
        user_auth: &[u8],
    ) -> Result<KeyBlob, Error> {
        let spec = CommandSpec::new(cc::CREATE, 1);
        let reply = self.execute_create(spec, parent, sessions, template, user_auth)?;
        let mut r = Reader::new(self.reply_params(&reply));
        let private = r.tpm2b(MAX_BLOB)?;
        let public = r.tpm2b(MAX_BLOB)?;
        Self::skip_creation(&mut r)?;
        r.finish()?;
        Public::parse(public)?;
        Ok(KeyBlob {
            private: blob(private)?,
            public: blob(public)?,
        })
    }

    /// `TPM2_Load`: loads `blob` under `parent`; the returned Name must equal the one
    /// computed here from `blob.public`.
    pub fn load(
        &mut self,
        parent: &Object,
        sessions: &mut [Auth<'_>],
        blob: &KeyBlob,
    ) -> Result<Object, Error> {
        let name = Public::parse(&blob.public)?.name()?;
        let spec = CommandSpec::new(cc::LOAD, 1)
            .with_response_handle()
            .with_command_encryption()
            .with_response_encryption();
        let reply = self.execute(&spec, &[parent], sessions, |w| {
            w.tpm2b(&blob.private)?;
            w.tpm2b(&blob.public)
        })?;
        let mut r = Reader::new(self.reply_params(&reply));
        let claimed = r.tpm2b(crate::public::MAX_NAME)?;
        r.finish()?;
        expect_transient(reply.handle)?;
        expect_name(&name, claimed)?;
        Ok(Object {
            handle: reply.handle,
            name,
        })
    }

    /// `TPM2_EvictControl`: with `object` transient, makes it persistent at
    /// `persistent` and returns the persistent object; with `object` persistent,
    /// evicts it and returns `None`. `auth` is `TPM_RH_OWNER` or `TPM_RH_PLATFORM`.
    pub fn evict_control(
        &mut self,
        auth: &Object,
        sessions: &mut [Auth<'_>],
        object: &Object,
        persistent: u32,
    ) -> Result<Option<Object>, Error> {
        let spec = CommandSpec::new(cc::EVICT_CONTROL, 1);
        self.execute_no_reply(&spec, &[auth, object], sessions, |w| w.u32(persistent))?;
        if object.handle >> 24 == rh::PERSISTENT_FIRST >> 24 {
            Ok(None)
        } else {
            Ok(Some(Object {
                handle: persistent,
                name: object.name.clone(),
            }))
        }
    }

    /// `TPM2_FlushContext` of a transient object or session handle.
    pub fn flush_context(&mut self, handle: u32) -> Result<(), Error> {
        let reply = self.simple(cc::FLUSH_CONTEXT, &[], |w| w.u32(handle))?;
        Reader::new(self.reply_params(&reply)).finish()?;
        Ok(())
    }

    /// Reads `handle`'s public area, checks its Name against `pinned` (constant
    /// time) and returns the checked key (used for salting sessions).
    pub fn read_pinned_public(&mut self, handle: u32, pinned: &[u8]) -> Result<Blob, Error> {
        let (obj, blob) = self.read_public(handle)?;
        expect_name(&obj.name, pinned)?;
        Ok(blob)
    }

    /// `TPM2_ObjectChangeAuth`: the object's private part re-encrypted with
    /// `new_auth` (load it with the same public part to use the new authValue).
    pub fn object_change_auth(
        &mut self,
        object: &Object,
        parent: &Object,
        sessions: &mut [Auth<'_>],
        new_auth: &[u8],
    ) -> Result<Blob, Error> {
        let spec = CommandSpec::new(cc::OBJECT_CHANGE_AUTH, 1)
            .with_command_encryption()
            .with_response_encryption();
        let reply = self.execute(&spec, &[object, parent], sessions, |w| w.tpm2b(new_auth))?;
        let mut r = Reader::new(self.reply_params(&reply));
        let private = r.tpm2b(MAX_BLOB)?;
        r.finish()?;
        Ok(blob(private)?)
    }
}

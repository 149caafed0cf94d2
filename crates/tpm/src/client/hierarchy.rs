//! Start-up, random bytes and capabilities; hierarchies, NV indices and PCRs.

use super::{blob, expect_name, Blob, CommandSpec, Error, Reply, Tpm, MAX_AUTH};
use crate::consts::alg;
use crate::consts::cap;
use crate::consts::cc;
use crate::consts::SHA256_SIZE;
use crate::marshal::{ParseError, Reader};
use crate::public::{NvPublic, Object, PcrSelection};
use crate::session::Auth;
use crate::transport::Transport;

/// `TPM_CC_HierarchyChangeAuth` (TPM 2.0 Part 2, table 12), from the one table.
pub const CC_HIERARCHY_CHANGE_AUTH: u32 = cc::HIERARCHY_CHANGE_AUTH;

impl<T: Transport> Tpm<T> {
    /// `TPM2_Startup(startupType)` (see [`su`](crate::consts::su)).
    pub fn startup(&mut self, startup_type: u16) -> Result<(), Error> {
        self.simple(cc::STARTUP, &[], |w| w.u16(startup_type))?;
        Ok(())
    }

    /// `TPM2_GetRandom`: fills up to `out.len()` (at most 64) bytes; returns how many
    /// the TPM delivered. These bytes are not authenticated: mix, never use alone.
    pub fn get_random(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        let want = u16::try_from(out.len().min(64)).map_err(|_| Error::BadArgument)?;
        let reply = self.simple(cc::GET_RANDOM, &[], |w| w.u16(want))?;
        let mut r = Reader::new(self.reply_params(&reply));
        let bytes = r.tpm2b(usize::from(want))?;
        r.finish()?;
        out.get_mut(..bytes.len())
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(bytes);
        Ok(bytes.len())
    }

    pub(super) fn get_capability(
        &mut self,
        capability: u32,
        property: u32,
        count: usize,
    ) -> Result<(Reply, bool), Error> {
        let c = u32::try_from(count).map_err(|_| Error::BadArgument)?;
        let reply = self.simple(cc::GET_CAPABILITY, &[], |w| {
            w.u32(capability)?;
            w.u32(property)?;
            w.u32(c)
        })?;
        let mut r = Reader::new(self.reply_params(&reply));
        let more = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(ParseError::BadValue.into()),
        };
        if r.u32()? != capability {
            return Err(ParseError::BadValue.into());
        }
        Ok((reply, more))
    }

    /// `TPM2_GetCapability(capability)` from `first` into `out`, each element read by
    /// `read`: the TPML's count must fit `out` and its elements the parameter area exactly.
    /// Returns (count, moreData).
    fn get_capability_list<V>(
        &mut self,
        capability: u32,
        first: u32,
        out: &mut [V],
        read: impl Fn(&mut Reader<'_>) -> Result<V, ParseError>,
    ) -> Result<(usize, bool), Error> {
        let (reply, more) = self.get_capability(capability, first, out.len())?;
        let mut r = Reader::new(self.reply_params(&reply));
        r.take(5)?;
        let count = usize::try_from(r.u32()?).map_err(|_| ParseError::TooLarge)?;
        if count > out.len() {
            return Err(ParseError::TooLarge.into());
        }
        for slot in out.iter_mut().take(count) {
            *slot = read(&mut r)?;
        }
        r.finish()?;
        Ok((count, more))
    }

    /// `TPM2_GetCapability(TPM_CAP_HANDLES)`: handles from `first` (e.g.
    /// `0x8000_0000` for transient objects) into `out`; returns (count, moreData).
    pub fn get_capability_handles(
        &mut self,
        first: u32,
        out: &mut [u32],
    ) -> Result<(usize, bool), Error> {
        self.get_capability_list(cap::HANDLES, first, out, |r| r.u32())
    }

    /// `TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES)`: (property, value) pairs from
    /// `first` into `out`; returns (count, moreData).
    pub fn get_capability_properties(
        &mut self,
        first: u32,
        out: &mut [(u32, u32)],
    ) -> Result<(usize, bool), Error> {
        self.get_capability_list(cap::TPM_PROPERTIES, first, out, |r| {
            Ok((r.u32()?, r.u32()?))
        })
    }

    /// `TPM2_HierarchyChangeAuth`: sets the authValue of `hierarchy`
    /// (`TPM_RH_PLATFORM`, `TPM_RH_OWNER`, `TPM_RH_ENDORSEMENT` or `TPM_RH_LOCKOUT`)
    /// to `new_auth` (at most the size of the TPM's context-integrity digest, and at
    /// most [`MAX_AUTH`] here).
    ///
    /// `sessions[0]` authorizes the hierarchy and must be the password session with
    /// its current authValue: the TPM keys the response HMAC of an HMAC or policy
    /// session with the *new* authValue, which [`Tpm::execute`] does not model, so
    /// such a session is refused ([`Error::BadSessions`]) rather than failing the
    /// response check after the change took effect. Add a second session with
    /// `decrypt` ([`Auth::encrypt_only`], salted) to send `new_auth` encrypted; with
    /// only the password session it crosses the link in clear.
    pub fn hierarchy_change_auth(
        &mut self,
        hierarchy: &Object,
        sessions: &mut [Auth<'_>],
        new_auth: &[u8],
    ) -> Result<(), Error> {
        if new_auth.len() > MAX_AUTH {
            return Err(Error::BadArgument);
        }
        if !matches!(sessions.first(), Some(Auth::Password(_))) {
            return Err(Error::BadSessions);
        }
        self.change_auth(CC_HIERARCHY_CHANGE_AUTH, hierarchy, sessions, new_auth)
    }

    /// Sets the authValue of `entity` with `code` (HierarchyChangeAuth, NV_ChangeAuth),
    /// whose only parameter is `newAuth` (at most [`MAX_AUTH`]; encrypted under a
    /// `decrypt` session) and whose response has none.
    fn change_auth(
        &mut self,
        code: u32,
        entity: &Object,
        sessions: &mut [Auth<'_>],
        new_auth: &[u8],
    ) -> Result<(), Error> {
        if new_auth.len() > MAX_AUTH {
            return Err(Error::BadArgument);
        }
        let spec = CommandSpec::new(code, 1).with_command_encryption();
        self.execute_no_reply(&spec, &[entity], sessions, |w| w.tpm2b(new_auth))
    }

    /// `TPM2_HierarchyControl(authHandle, enable, state)`: with `state` false, disables
    /// `enable` (`TPM_RH_PLATFORM`: phEnable; `TPM_RH_PLATFORM_NV`: phEnableNV) until the
    /// next TPM reset.
    pub fn hierarchy_control(
        &mut self,
        auth: &Object,
        sessions: &mut [Auth<'_>],
        enable: u32,
        state: bool,
    ) -> Result<(), Error> {
        let spec = CommandSpec::new(cc::HIERARCHY_CONTROL, 1);
        self.execute_no_reply(&spec, &[auth], sessions, |w| {
            w.u32(enable)?;
            w.u8(u8::from(state))
        })
    }

    /// `TPM2_NV_DefineSpace(authHandle, auth, publicInfo)`. `auth` is the first
    /// parameter: send it under a `decrypt` session.
    pub fn nv_define_space(
        &mut self,
        hierarchy: &Object,
        sessions: &mut [Auth<'_>],
        auth: &[u8],
        public: &NvPublic<'_>,
    ) -> Result<Object, Error> {
        if auth.len() > MAX_AUTH {
            return Err(Error::BadArgument);
        }
        let spec = CommandSpec::new(cc::NV_DEFINE_SPACE, 1).with_command_encryption();
        self.execute_no_reply(&spec, &[hierarchy], sessions, |w| {
            w.tpm2b(auth)?;
            let m = w.begin_sized()?;
            public.marshal(w)?;
            w.end_sized(m)
        })?;
        Ok(Object {
            handle: public.index,
            name: public.name()?,
        })
    }

    /// `TPM2_NV_ReadPublic`: the index's marshalled `TPMS_NV_PUBLIC` and the index
    /// as an object named by the Name computed here from it (the TPM's claimed Name
    /// must agree). Not authenticated: compare with a pinned Name.
    pub fn nv_read_public(&mut self, index: u32) -> Result<(Object, Blob), Error> {
        let obj = Object::permanent(index);
        let reply = self.simple(cc::NV_READ_PUBLIC, &[&obj], |_| Ok(()))?;
        let mut r = Reader::new(self.reply_params(&reply));
        let raw = r.tpm2b(crate::public::MAX_NV_PUBLIC)?;
        let claimed = r.tpm2b(crate::public::MAX_NAME)?;
        r.finish()?;
        let parsed = NvPublic::parse(raw)?;
        if parsed.index != index {
            return Err(ParseError::BadValue.into());
        }
        let name = parsed.name()?;
        expect_name(&name, claimed)?;
        let blob = blob(raw)?;
        Ok((
            Object {
                handle: index,
                name,
            },
            blob,
        ))
    }

    /// `TPM2_NV_ChangeAuth(nvIndex, newAuth)`: the admin role, so `sessions[0]` must be
    /// a policy session satisfying the index's authPolicy; add a `decrypt` session to
    /// send `new_auth` encrypted.
    pub fn nv_change_auth(
        &mut self,
        index: &Object,
        sessions: &mut [Auth<'_>],
        new_auth: &[u8],
    ) -> Result<(), Error> {
        self.change_auth(cc::NV_CHANGE_AUTH, index, sessions, new_auth)
    }

    /// `TPM2_PCR_Read` of one SHA-256 selection: returns (pcrUpdateCounter, the
    /// selection the TPM read, number of digests written to `out`).
    pub fn pcr_read(
        &mut self,
        selection: &PcrSelection,
        out: &mut [[u8; SHA256_SIZE]],
    ) -> Result<(u32, Option<PcrSelection>, usize), Error> {
        let reply = self.simple(cc::PCR_READ, &[], |w| selection.marshal_list(w))?;
        let mut r = Reader::new(self.reply_params(&reply));
        let counter = r.u32()?;
        let read = PcrSelection::parse_list(&mut r)?;
        let count = usize::try_from(r.u32()?).map_err(|_| ParseError::TooLarge)?;
        if count > 8 || count > out.len() {
            return Err(ParseError::TooLarge.into());
        }
        for slot in out.iter_mut().take(count) {
            let d = r.tpm2b(SHA256_SIZE)?;
            *slot = <[u8; SHA256_SIZE]>::try_from(d).map_err(|_| ParseError::BadValue)?;
        }
        r.finish()?;
        Ok((counter, read, count))
    }

    /// `TPM2_PCR_Extend` of PCR `index` with one SHA-256 digest.
    pub fn pcr_extend(
        &mut self,
        index: u32,
        sessions: &mut [Auth<'_>],
        digest: &[u8; SHA256_SIZE],
    ) -> Result<(), Error> {
        let spec = CommandSpec::new(cc::PCR_EXTEND, 1);
        let pcr = Object::pcr(index);
        self.execute_no_reply(&spec, &[&pcr], sessions, |w| {
            w.u32(1)?;
            w.u16(alg::SHA256)?;
            w.bytes(digest)
        })
    }
}

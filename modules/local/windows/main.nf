process EVOSCAN_WINDOWS {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(sequences), path(gtf), path(regions)

    output:
    tuple val(meta), path("${meta.id}.windows.h5"), emit: windows
    tuple val("${task.process}"), val("evoscan"), eval("evoscan --version | cut -d\" \" -f2"), emit: versions

    script:
    def args = task.ext.args ?: ''
    // a loci FASTA (GTF optional, for region classes), a genome with a GTF and gene names (or all,
    // of one gene type), or a genome with a BED of regions
    def gene_type = meta.gene_type ? " --gene-type ${meta.gene_type}" : ''
    def source = regions ? "--genome ${sequences} --regions ${regions}"
        : meta.genes ? "--genome ${sequences} --gtf ${gtf} --genes ${meta.genes}${gene_type}"
        : "--fasta ${sequences}" + (gtf ? " --gtf ${gtf}" : '')
    """
    evoscan windows ${source} ${args} -o ${meta.id}.windows.h5
    """

    stub:
    """
    touch ${meta.id}.windows.h5
    """
}
